//! The narrow Cloud Controller interface the deploy layer needs, defined by its consumer.
//!
//! [`CfApi`] lists the operations the strategies perform (blue-green; rolling and canary add
//! deployments and environment variables), in Cloud Controller vocabulary;
//! [`MUTATING_METHODS`] names those that change the platform. The integrator implements it for the real `cf::Client` (plus the `package`
//! layer for uploads) and maps `cf::Error` into [`ApiError`]; tests implement it with an
//! in-memory fake. Types here are plain data mirroring the v3 resources, reduced to the
//! fields the deploy layer reads.
//!
//! Depends on: tokio (progress channel), thiserror. Must not: know about HTTP, manifests or printing.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;

use tokio::sync::mpsc;

use super::budget::{Phase, Requests};

pub use crate::cf::guid::{
    AppGuid, BuildGuid, DeploymentGuid, DestinationGuid, DomainGuid, DropletGuid, PackageGuid,
    ProcessGuid, RouteGuid, ServiceCredentialBindingGuid, ServiceInstanceGuid, SpaceGuid, TaskGuid,
};

/// A Cloud Controller error, as the adapter reports it. Branch on [`ApiError::title`] or
/// [`ApiError::status`], never on [`ApiError::detail`] (display only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiError {
    /// HTTP status, `None` for transport errors and timeouts.
    pub status: Option<u16>,
    /// CF error code (e.g. 10010), when the body had one.
    pub code: Option<i64>,
    /// CF error title (e.g. `CF-ResourceNotFound`), or a short kind for non-CC errors.
    pub title: String,
    /// Human-readable detail.
    pub detail: String,
    /// `X-Vcap-Request-Id` of the failed request.
    pub request_id: Option<String>,
}

impl ApiError {
    /// An error with a status, title and detail.
    pub fn new(status: u16, title: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError {
            status: Some(status),
            code: None,
            title: title.into(),
            detail: detail.into(),
            request_id: None,
        }
    }

    /// A `404 CF-ResourceNotFound` error.
    pub fn not_found(detail: impl Into<String>) -> Self {
        let mut e = ApiError::new(404, "CF-ResourceNotFound", detail);
        e.code = Some(10010);
        e
    }

    /// A transport or timeout error (no HTTP status).
    pub fn transport(detail: impl Into<String>) -> Self {
        ApiError {
            title: "transport".into(),
            detail: detail.into(),
            ..ApiError::default()
        }
    }

    /// Sets the request id.
    #[must_use]
    pub fn with_request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    /// Whether the resource does not exist (any `404`, or a `*NotFound` title).
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404) || self.title.ends_with("NotFound")
    }

    /// Whether a create failed because the name is taken (`422 CF-UniquenessError`, code
    /// 10016): another client created it first.
    pub fn is_uniqueness(&self) -> bool {
        self.title == "CF-UniquenessError" || self.code == Some(10016)
    }

    /// Whether a route create failed because the route exists (`422`, "Route already exists
    /// ..." as Cloud Controller words it and the cf CLI matches it).
    pub fn is_route_taken(&self) -> bool {
        self.status == Some(422) && self.detail.contains("Route already exists")
    }

    /// Whether an optional service said it is not there for this user: absent from the root
    /// document (title `unavailable`), `403`, `404` or `501`. Such reads degrade to a warning.
    pub fn is_unavailable(&self) -> bool {
        self.title == UNAVAILABLE || matches!(self.status, Some(403 | 404 | 501))
    }

    /// An optional service the platform does not offer (not in the root document).
    pub fn unavailable(detail: impl Into<String>) -> Self {
        ApiError {
            title: UNAVAILABLE.into(),
            detail: detail.into(),
            ..ApiError::default()
        }
    }
}

/// The title of [`ApiError::unavailable`].
const UNAVAILABLE: &str = "unavailable";

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(s) => write!(f, "{s} {}", self.title)?,
            None => write!(f, "{}", self.title)?,
        }
        if let Some(c) = self.code {
            write!(f, " (code {c})")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " [request id {id}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// The state of an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppState {
    /// Desired state STARTED.
    Started,
    /// Desired state STOPPED.
    Stopped,
}

/// An app (the fields the deploy layer reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// Its GUID, as in `/v3/apps/:guid`.
    pub guid: AppGuid,
    /// Its name in the space (unique there).
    pub name: String,
    /// Desired state.
    pub state: AppState,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
}

/// The lifecycle an app is created with; Cloud Controller cannot change it afterwards, so it
/// must match the manifest applied to the app later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AppLifecycle {
    /// Buildpacks (the default).
    #[default]
    Buildpack,
    /// Cloud Native Buildpacks (`lifecycle: cnb`).
    Cnb,
    /// A docker image.
    Docker,
}

impl AppLifecycle {
    /// The lifecycle `type` as Cloud Controller spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            AppLifecycle::Buildpack => "buildpack",
            AppLifecycle::Cnb => "cnb",
            AppLifecycle::Docker => "docker",
        }
    }
}

/// An app to create (`POST /v3/apps`): the name, in the request's space, with its lifecycle
/// and metadata. The rest comes from the manifest applied afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApp {
    /// The name (unique in the space, case-insensitive).
    pub name: String,
    /// The lifecycle type.
    pub lifecycle: AppLifecycle,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
}

/// A change to an app's metadata: `Some` sets a key, `None` removes it (CC PATCH semantics).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetadataUpdate {
    /// Labels to set or remove.
    pub labels: BTreeMap<String, Option<String>>,
    /// Annotations to set or remove.
    pub annotations: BTreeMap<String, Option<String>>,
}

impl MetadataUpdate {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.annotations.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// The domain's GUID.
    pub guid: DomainGuid,
    /// The domain's name, e.g. `apps.example.com`.
    pub name: String,
    /// Whether it is an internal domain (`apps.internal`).
    pub internal: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The route's GUID.
    pub guid: RouteGuid,
    /// Host part (may be empty).
    pub host: String,
    /// Path (empty or starting with `/`).
    pub path: String,
    /// Port of a TCP route.
    pub port: Option<u16>,
    /// The domain's GUID.
    pub domain_guid: DomainGuid,
    /// The CC `url` field: `host.domain[:port]/path`.
    pub url: String,
}

/// A route and its destinations (a v3 route object carries them inline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteState {
    pub route: Route,
    pub destinations: Vec<Destination>,
}

/// The routes mapped to an app, each with all its destinations, and the domains of those
/// routes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MappedRoutes {
    pub routes: Vec<RouteState>,
    pub domains: Vec<Domain>,
}

/// A route to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRoute {
    /// The domain it belongs to (from the route's address).
    pub domain_guid: DomainGuid,
    /// Host part (may be empty).
    pub host: String,
    /// Path (empty or starting with `/`).
    pub path: String,
    /// Port of a TCP route.
    pub port: Option<u16>,
}

/// A route destination (a mapping of a route to an app's process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The destination's GUID.
    pub guid: DestinationGuid,
    /// The app it points to.
    pub app_guid: AppGuid,
    /// The process type (`web` by default).
    pub process_type: String,
    /// The app port, when not the default.
    pub port: Option<u32>,
    /// `http1`, `http2` or `tcp`, when set.
    pub protocol: Option<String>,
}

impl Destination {
    /// The same mapping, to add again (the undo of its removal).
    pub fn to_new(&self) -> NewDestination {
        NewDestination {
            app_guid: self.app_guid.clone(),
            process_type: self.process_type.clone(),
            port: self.port,
            protocol: self.protocol.clone(),
        }
    }
}

/// A destination to add to a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDestination {
    /// The app to route to.
    pub app_guid: AppGuid,
    /// The process type (`web` by default).
    pub process_type: String,
    /// The app port, when not the default.
    pub port: Option<u32>,
    /// `http1`, `http2` or `tcp`, when set.
    pub protocol: Option<String>,
}

/// A process of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// The process GUID.
    pub guid: ProcessGuid,
    /// The process type (`web`, `worker`, ...).
    pub process_type: String,
    /// Desired instance count.
    pub instances: u32,
    /// Memory per instance in MB, when Cloud Controller reports it.
    pub memory_mb: Option<u64>,
}

/// The state of one process instance (`/v3/processes/:guid/stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    Running,
    Starting,
    Crashed,
    /// Down (not placed, or the app is stopped).
    Down,
    Stopping,
    /// A state this version does not know.
    Unknown,
}

/// One instance's stats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceStat {
    /// Instance index.
    pub index: u32,
    pub state: InstanceState,
    /// Readiness result (`None` when the platform does not report it).
    pub routable: Option<bool>,
    /// Placement error or crash detail, when reported.
    pub details: Option<String>,
    /// Diego's instance GUID: a new one on every (re)start of the instance at this index, so a
    /// change between two polls is a crash (or an evacuation) that polling did not see.
    pub instance_guid: Option<String>,
    /// Seconds since this instance started; going back between two polls is a restart.
    pub uptime: Option<u64>,
}

/// A crash of an app instance, from the platform's records (audit events or log-cache), which
/// keep it after Diego has restarted the instance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CrashEvent {
    /// The crashed process (the audit event's actor), when the record names it.
    pub process_guid: Option<ProcessGuid>,
    /// The crashed instance's GUID, when the record names it.
    pub instance_guid: Option<String>,
    /// Instance index, when the record names it.
    pub index: Option<u32>,
    /// Why, as the platform says it (`exit_description`, else `reason`).
    pub reason: String,
}

/// Crash records of an app, and the sources that could not be read (each a one-line reason:
/// the crash check then relies on the others and on instance stats).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CrashEvents {
    /// Crashes recorded since the time asked for.
    pub events: Vec<CrashEvent>,
    /// Instances Diego moved to another cell since then (`audit.app.process.rescheduling`
    /// events, CELL "requesting replacement" log lines): replaced, but not crashed. `reason`
    /// says why (e.g. `Cell is being evacuated`).
    pub moves: Vec<CrashEvent>,
    /// Sources that are absent or forbidden (e.g. `audit events: 403 CF-NotAuthorized`).
    pub unavailable: Vec<String>,
}

/// What to read from an app's log-cache (see [`CfApi::app_log`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    /// Only records at or after this time.
    pub since: std::time::SystemTime,
    /// Log lines (`STG`, `CELL`, `API`, `APP/...`, `RTR`).
    pub lines: bool,
    /// gorouter's per-request `http` timers.
    pub requests: bool,
    /// At most this many records; log-cache caps one read at 1000.
    pub limit: u32,
    /// Keep the newest `limit` records after `since` (else the oldest); the answer is oldest
    /// first either way.
    pub newest: bool,
}

/// One record of an app's log-cache, oldest first in [`CfApi::app_log`]'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// When it was emitted.
    pub at: std::time::SystemTime,
    /// The envelope's `instance_id` (the instance index for app and router records).
    pub instance: String,
    /// A line or a request.
    pub entry: LogEntry,
}

/// The content of a [`LogRecord`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEntry {
    /// A log line as `cf logs` shows it.
    Line {
        /// `source_type` tag: `STG`, `CELL`, `API`, `APP/PROC/WEB`, `RTR`, ... (empty if none).
        source_type: String,
        /// Written to standard error.
        stderr: bool,
        /// The line (invalid UTF-8 replaced).
        text: String,
    },
    /// One request gorouter sent to the app (its `http` timer envelope).
    Request {
        /// The app's HTTP status (`status_code` tag; 0 when the router got no answer).
        status: u16,
        /// How long the request took at the router.
        duration: std::time::Duration,
    },
}

/// The state of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildState {
    /// Still staging.
    Staging,
    /// Staged; holds the droplet GUID.
    Staged(DropletGuid),
    /// Failed; holds the staging error.
    Failed(String),
}

/// A task to run on an app (`POST /v3/apps/:guid/tasks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    /// The command, run as `cf run-task --command` runs it.
    pub command: String,
    /// Its name (`zdt-migrate-1`); its log lines are `APP/TASK/<name>`.
    pub name: String,
    /// Memory limit, MB (`None`: the platform's default).
    pub memory_mb: Option<u64>,
    /// Disk limit, MB (`None`: the platform's default).
    pub disk_mb: Option<u64>,
}

/// The state of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    /// Pending or running (or being cancelled).
    Running,
    /// Exited 0.
    Succeeded,
    /// Failed; holds the failure reason.
    Failed(String),
}

/// A container-to-container network policy (networking API).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NetworkPolicy {
    /// Source app GUID.
    pub source_app: AppGuid,
    /// Destination app GUID.
    pub destination_app: AppGuid,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// First port.
    pub start_port: u16,
    /// Last port.
    pub end_port: u16,
}

/// Where an app's code comes from. `B` is the integrator's opaque bits handle (for example
/// a scanned app directory); the deploy layer only passes it back to [`CfApi::upload_bits`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppSource<B> {
    /// A bits package built from local files.
    Bits(B),
    /// A docker image. The password is the adapter's business (`CF_DOCKER_PASSWORD`).
    Docker {
        /// The image reference.
        image: String,
        /// Registry user name.
        username: Option<String>,
    },
}

/// Upload progress, sent by [`CfApi::upload_bits`] while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadProgress {
    /// Bytes sent so far.
    pub sent: u64,
    /// Total bytes to send, when known.
    pub total: Option<u64>,
}

/// Where an upload reports progress. Sending never blocks and never fails (a closed
/// receiver just drops the update).
#[derive(Debug, Clone)]
pub struct ProgressSink {
    tx: mpsc::UnboundedSender<UploadProgress>,
}

impl ProgressSink {
    /// A sink and the receiver the executor reads.
    pub fn channel() -> (ProgressSink, mpsc::UnboundedReceiver<UploadProgress>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (ProgressSink { tx }, rx)
    }

    /// Reports bytes sent so far.
    pub fn report(&self, sent: u64, total: Option<u64>) {
        // A dropped receiver only means nobody renders progress any more.
        let _ignored = self.tx.send(UploadProgress { sent, total });
    }
}

/// A quota's limits (`None`: unlimited, Cloud Controller's `null`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QuotaLimits {
    /// The quota's name (`cf space-quota NAME`, `cf org-quota NAME`).
    pub name: String,
    /// Memory of every started instance together, MB (`apps.total_memory_in_mb`).
    pub total_memory_mb: Option<u64>,
    /// Memory of one instance, MB (`apps.per_process_memory_in_mb`).
    pub instance_memory_mb: Option<u64>,
    /// Started instances of every process together (`apps.total_instances`).
    pub total_instances: Option<u64>,
    /// Routes (`routes.total_routes`).
    pub total_routes: Option<u64>,
}

/// What counts against a quota now (`usage_summary`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuotaUsage {
    /// Memory of started instances (and running tasks), MB.
    pub memory_mb: u64,
    /// Started instances.
    pub instances: u64,
    /// Routes, when the platform says (older Cloud Controllers' org summaries do not).
    pub routes: Option<u64>,
}

/// The quota of one level, the space's or the org's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaLevel {
    /// No quota applies (a space without a space quota).
    Unlimited,
    /// A quota and what counts against it.
    Limited {
        limits: QuotaLimits,
        /// What counts against them now.
        usage: QuotaUsage,
    },
    /// The quota or its usage cannot be read (absent, 403 or 404 for this user): why.
    Unknown(String),
}

/// The quotas a deploy to a space must fit in: the space's and its org's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quotas {
    /// The space quota.
    pub space: QuotaLevel,
    /// The organization quota.
    pub org: QuotaLevel,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            space: QuotaLevel::Unlimited,
            org: QuotaLevel::Unlimited,
        }
    }
}

/// The strategy of a Cloud Controller deployment (`POST /v3/deployments`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentStrategy {
    /// `rolling`: instances are replaced `max_in_flight` at a time.
    Rolling,
    /// `canary`: pauses after each canary step until continued.
    Canary,
}

/// A deployment to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeployment {
    /// The app whose process is replaced (same GUID before and after).
    pub app_guid: AppGuid,
    /// The droplet to roll out.
    pub droplet_guid: DropletGuid,
    /// Rolling or canary.
    pub strategy: DeploymentStrategy,
    /// `options.max_in_flight` (server default 1 when `None`).
    pub max_in_flight: Option<u32>,
    /// `options.canary.steps` as instance weights in percent (canary only; empty: one step).
    pub canary_steps: Vec<u32>,
}

/// Where a deployment is (`status.value` + `status.reason`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeploymentState {
    /// ACTIVE/DEPLOYING (or PREPAUSED): rolling out.
    Deploying,
    /// ACTIVE/PAUSED: a canary step waits for `continue`.
    Paused,
    /// ACTIVE/CANCELING: a cancel is being carried out.
    Canceling,
    /// FINALIZED/DEPLOYED: success.
    Deployed,
    /// FINALIZED/CANCELED: the old version was restored.
    Canceled,
    /// FINALIZED/SUPERSEDED: another deployment of the app replaced it.
    Superseded,
    /// A status this version does not know (`value/reason`).
    Other(String),
}

impl DeploymentState {
    /// Whether the deployment is over (FINALIZED).
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            DeploymentState::Deployed | DeploymentState::Canceled | DeploymentState::Superseded
        )
    }
}

impl fmt::Display for DeploymentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeploymentState::Deploying => "ACTIVE/DEPLOYING",
            DeploymentState::Paused => "ACTIVE/PAUSED",
            DeploymentState::Canceling => "ACTIVE/CANCELING",
            DeploymentState::Deployed => "FINALIZED/DEPLOYED",
            DeploymentState::Canceled => "FINALIZED/CANCELED",
            DeploymentState::Superseded => "FINALIZED/SUPERSEDED",
            DeploymentState::Other(s) => s,
        })
    }
}

/// An app's service credential binding (`GET /v3/service_credential_bindings?type=app`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceBinding {
    /// The binding's GUID.
    pub guid: ServiceCredentialBindingGuid,
    /// The bound service instance's GUID.
    pub service_instance_guid: ServiceInstanceGuid,
}

/// A deployment (the fields the deploy layer reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// Its GUID, as in `/v3/deployments/:guid` (kept to cancel it on rollback).
    pub guid: DeploymentGuid,
    /// Where it is.
    pub state: DeploymentState,
    /// The GUIDs of the processes it created (`new_processes`: the new `web` process).
    pub new_processes: Vec<ProcessGuid>,
    /// Canary progress: (current step, number of steps), canary only.
    pub canary_step: Option<(u32, u32)>,
    /// The error the deployment updater recorded on its last run (`status.details.error`,
    /// CAPI 3.192+; e.g. a quota that refuses the next new instances), if any.
    pub error: Option<String>,
    /// When the new instances last passed a health check and the updater moved on
    /// (`status.details.last_successful_healthcheck`, RFC 3339), when reported.
    pub last_successful_healthcheck: Option<String>,
}

/// The [`CfApi`] methods that change the platform (fault-injection tests fail each of them in
/// turn): exactly the methods whose doc names a `POST`, `PATCH` or `DELETE` request, which a
/// test checks against the trait's source (every method names its request or says it is
/// read-only), so a new mutating method cannot be left out.
pub const MUTATING_METHODS: &[&str] = &[
    "apply_manifest",
    "create_app",
    "create_package",
    "upload_bits",
    "create_build",
    "set_current_droplet",
    "start_app",
    "stop_app",
    "rename_app",
    "delete_app",
    "update_metadata",
    "set_ssh_enabled",
    "create_route",
    "delete_route",
    "add_destination",
    "remove_destination",
    "create_network_policies",
    "delete_network_policies",
    "create_deployment",
    "continue_deployment",
    "cancel_deployment",
    "update_env_vars",
    "delete_service_binding",
    "scale_process",
    "create_task",
    "cancel_task",
];

/// Result of a [`CfApi`] call.
pub type ApiResult<T> = Result<T, ApiError>;

/// The Cloud Controller operations the strategies need (blue-green; rolling and canary add
/// deployments and environment variables). Implementations must be cheap to call
/// concurrently through `&self` (interior mutability for the warnings buffer) and bound every
/// wait they do internally (jobs, package processing).
///
/// The methods named in [`MUTATING_METHODS`] change the platform; the executor never cancels
/// one once started, except the upload (its package belongs to the new app, which the
/// rollback deletes).
pub trait CfApi: Sync {
    /// The opaque bits handle of an app (see [`AppSource`]).
    type Bits: Send + Sync;

    /// Apps in the space with any of these names (`GET /v3/apps?names=..&space_guids=..`).
    fn find_apps_by_name(
        &self,
        space_guid: &SpaceGuid,
        names: &[String],
    ) -> impl Future<Output = ApiResult<Vec<App>>> + Send;
    /// Apps in the space matching a label selector (`GET /v3/apps?label_selector=..`).
    fn find_apps_by_label(
        &self,
        space_guid: &SpaceGuid,
        selector: &str,
    ) -> impl Future<Output = ApiResult<Vec<App>>> + Send;
    /// One app (`GET /v3/apps/:guid`).
    fn get_app(&self, guid: &AppGuid) -> impl Future<Output = ApiResult<App>> + Send;
    /// Creates an app (`POST /v3/apps`). Fails with [`ApiError::is_uniqueness`] when an app
    /// of that name exists in the space, which makes the create exclusive: of two runs
    /// creating the same name, exactly one succeeds.
    fn create_app(
        &self,
        space_guid: &SpaceGuid,
        app: &NewApp,
    ) -> impl Future<Output = ApiResult<App>> + Send;
    /// Applies a manifest to the space and waits (bounded) for its job to complete
    /// (`POST /v3/spaces/:guid/actions/apply_manifest`).
    fn apply_manifest(
        &self,
        space_guid: &SpaceGuid,
        yaml: &str,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// Creates a bits or docker package for the app (`POST /v3/packages`).
    fn create_package(
        &self,
        app_guid: &AppGuid,
        source: &AppSource<Self::Bits>,
    ) -> impl Future<Output = ApiResult<PackageGuid>> + Send;
    /// Resource-matches, zips and uploads the bits, then waits (bounded) until the package is
    /// READY (`POST /v3/resource_matches`, `POST /v3/packages/:guid/upload`).
    fn upload_bits(
        &self,
        package_guid: &PackageGuid,
        bits: &Self::Bits,
        progress: ProgressSink,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// Starts staging (`POST /v3/builds`).
    fn create_build(
        &self,
        package_guid: &PackageGuid,
    ) -> impl Future<Output = ApiResult<BuildGuid>> + Send;
    /// The build's state (`GET /v3/builds/:guid`).
    fn get_build(
        &self,
        build_guid: &BuildGuid,
    ) -> impl Future<Output = ApiResult<BuildState>> + Send;
    /// Sets the app's current droplet (`PATCH /v3/apps/:guid/relationships/current_droplet`).
    fn set_current_droplet(
        &self,
        app_guid: &AppGuid,
        droplet_guid: &DropletGuid,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// Starts the app (`POST /v3/apps/:guid/actions/start`).
    fn start_app(&self, app_guid: &AppGuid) -> impl Future<Output = ApiResult<()>> + Send;
    /// Stops the app (`POST /v3/apps/:guid/actions/stop`).
    fn stop_app(&self, app_guid: &AppGuid) -> impl Future<Output = ApiResult<()>> + Send;
    /// Renames the app and applies `metadata` (labels and annotations set or removed; empty:
    /// none) in the same request, both or neither (`PATCH /v3/apps/:guid`).
    fn rename_app(
        &self,
        app_guid: &AppGuid,
        name: &str,
        metadata: &MetadataUpdate,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// Deletes the app and waits (bounded) for the job (`DELETE /v3/apps/:guid`).
    fn delete_app(&self, app_guid: &AppGuid) -> impl Future<Output = ApiResult<()>> + Send;
    /// Sets or removes labels/annotations (`PATCH /v3/apps/:guid` metadata).
    fn update_metadata(
        &self,
        app_guid: &AppGuid,
        update: &MetadataUpdate,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// Whether SSH is enabled for the app (`GET /v3/apps/:guid/features/ssh`).
    fn get_ssh_enabled(&self, app_guid: &AppGuid) -> impl Future<Output = ApiResult<bool>> + Send;
    /// Enables or disables SSH (`PATCH /v3/apps/:guid/features/ssh`).
    fn set_ssh_enabled(
        &self,
        app_guid: &AppGuid,
        enabled: bool,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// The app's processes (`GET /v3/apps/:guid/processes`).
    fn list_processes(
        &self,
        app_guid: &AppGuid,
    ) -> impl Future<Output = ApiResult<Vec<Process>>> + Send;
    /// Per-instance stats of a process (`GET /v3/processes/:guid/stats`).
    fn process_stats(
        &self,
        process_guid: &ProcessGuid,
    ) -> impl Future<Output = ApiResult<Vec<InstanceStat>>> + Send;
    /// A domain by name, `None` when it does not exist (`GET /v3/domains?names=..`).
    fn find_domain(&self, name: &str) -> impl Future<Output = ApiResult<Option<Domain>>> + Send;
    /// The org's default domain (`GET /v3/organizations/:guid/domains/default`).
    fn default_domain(&self) -> impl Future<Output = ApiResult<Option<Domain>>> + Send;
    /// Routes mapped to the app, each with its destinations, and their domains
    /// (`GET /v3/routes?app_guids=:guid&include=domain`).
    fn list_app_routes(
        &self,
        app_guid: &AppGuid,
    ) -> impl Future<Output = ApiResult<MappedRoutes>> + Send;
    /// A route by its parts, with its destinations; `None` when it does not exist
    /// (`GET /v3/routes?domain_guids=..&hosts=..&paths=..&ports=..`).
    fn find_route(
        &self,
        route: &NewRoute,
    ) -> impl Future<Output = ApiResult<Option<RouteState>>> + Send;
    /// Creates a route in the space (`POST /v3/routes`).
    fn create_route(
        &self,
        space_guid: &SpaceGuid,
        route: &NewRoute,
    ) -> impl Future<Output = ApiResult<Route>> + Send;
    /// Deletes a route and waits (bounded) for the job (`DELETE /v3/routes/:guid`).
    fn delete_route(&self, route_guid: &RouteGuid) -> impl Future<Output = ApiResult<()>> + Send;
    /// The route's destinations (`GET /v3/routes/:guid/destinations`).
    fn list_destinations(
        &self,
        route_guid: &RouteGuid,
    ) -> impl Future<Output = ApiResult<Vec<Destination>>> + Send;
    /// Adds one destination, keeping the others (`POST /v3/routes/:guid/destinations`);
    /// returns the destination for that app and process.
    fn add_destination(
        &self,
        route_guid: &RouteGuid,
        destination: &NewDestination,
    ) -> impl Future<Output = ApiResult<Destination>> + Send;
    /// Removes one destination (`DELETE /v3/routes/:guid/destinations/:dguid`).
    fn remove_destination(
        &self,
        route_guid: &RouteGuid,
        destination_guid: &DestinationGuid,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// Policies whose source or destination is one of these apps
    /// (`GET /networking/v1/external/policies?id=..`).
    fn list_network_policies(
        &self,
        app_guids: &[AppGuid],
    ) -> impl Future<Output = ApiResult<Vec<NetworkPolicy>>> + Send;
    /// Creates policies (`POST /networking/v1/external/policies`).
    fn create_network_policies(
        &self,
        policies: &[NetworkPolicy],
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// Deletes policies (`POST /networking/v1/external/policies/delete`).
    fn delete_network_policies(
        &self,
        policies: &[NetworkPolicy],
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// Creates a rolling or canary deployment (`POST /v3/deployments`).
    fn create_deployment(
        &self,
        new: &NewDeployment,
    ) -> impl Future<Output = ApiResult<Deployment>> + Send;
    /// A deployment (`GET /v3/deployments/:guid`).
    fn get_deployment(
        &self,
        guid: &DeploymentGuid,
    ) -> impl Future<Output = ApiResult<Deployment>> + Send;
    /// The app's newest ACTIVE deployment, if any
    /// (`GET /v3/deployments?app_guids=..&status_values=ACTIVE`).
    fn find_active_deployment(
        &self,
        app_guid: &AppGuid,
    ) -> impl Future<Output = ApiResult<Option<Deployment>>> + Send;
    /// Continues a PAUSED canary deployment (`POST /v3/deployments/:guid/actions/continue`).
    fn continue_deployment(
        &self,
        guid: &DeploymentGuid,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// Cancels a deployment (`POST /v3/deployments/:guid/actions/cancel`).
    fn cancel_deployment(
        &self,
        guid: &DeploymentGuid,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// The app's user-set environment variables (`GET /v3/apps/:guid/environment_variables`).
    fn get_env_vars(
        &self,
        app_guid: &AppGuid,
    ) -> impl Future<Output = ApiResult<BTreeMap<String, String>>> + Send;
    /// Sets (`Some`) or removes (`None`) environment variables, keeping the others
    /// (`PATCH /v3/apps/:guid/environment_variables`).
    fn update_env_vars(
        &self,
        app_guid: &AppGuid,
        vars: &BTreeMap<String, Option<String>>,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// The app's service bindings (`GET /v3/service_credential_bindings?type=app&app_guids=..`).
    fn list_service_bindings(
        &self,
        app_guid: &AppGuid,
    ) -> impl Future<Output = ApiResult<Vec<ServiceBinding>>> + Send;
    /// Deletes a service binding and waits (bounded) for its job, if any
    /// (`DELETE /v3/service_credential_bindings/:guid`).
    fn delete_service_binding(
        &self,
        guid: &ServiceCredentialBindingGuid,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// Crash records of the app's instances since `since` (audit events
    /// `audit.app.process.crash` and log-cache's "App instance exited" lines, whichever the
    /// platform offers). Read-only; an absent or forbidden source is listed in
    /// [`CrashEvents::unavailable`], not an error.
    fn crash_events(
        &self,
        app_guid: &AppGuid,
        since: std::time::SystemTime,
    ) -> impl Future<Output = ApiResult<CrashEvents>> + Send;
    /// The app's recent log-cache records (lines and/or router requests) since
    /// `query.since`, oldest first. Read-only. log-cache absent or forbidden is an error with
    /// [`ApiError::is_unavailable`] true (callers say so once and go on).
    fn app_log(
        &self,
        app_guid: &AppGuid,
        query: &LogQuery,
    ) -> impl Future<Output = ApiResult<Vec<LogRecord>>> + Send;
    /// Sets the instance count of a process (`POST /v3/processes/:guid/actions/scale`;
    /// absolute, so repeating it is harmless). Returns once Cloud Controller accepted it; the
    /// instances start or stop after that.
    fn scale_process(
        &self,
        process_guid: &ProcessGuid,
        instances: u32,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// The space's and its org's quotas with their usage (`GET /v3/spaces/:guid` with
    /// `include=organization` for both `relationships.quota`, `/v3/space_quotas/:guid`,
    /// `/v3/organization_quotas/:guid`, and the usage summaries). Read-only. A level that is
    /// absent, 403 or 404 for this user is [`QuotaLevel::Unknown`], not an error.
    fn quotas(&self, space_guid: &SpaceGuid) -> impl Future<Output = ApiResult<Quotas>> + Send;
    /// Runs a task on the app with its current droplet, environment and bindings
    /// (`POST /v3/apps/:guid/tasks`). Never retried: a second create runs the command twice.
    fn create_task(
        &self,
        app_guid: &AppGuid,
        task: &NewTask,
    ) -> impl Future<Output = ApiResult<TaskGuid>> + Send;
    /// The state of a task (`GET /v3/tasks/:guid`).
    fn get_task(&self, guid: &TaskGuid) -> impl Future<Output = ApiResult<TaskState>> + Send;
    /// Cancels a task (`POST /v3/tasks/:guid/actions/cancel`); it ends FAILED.
    fn cancel_task(&self, guid: &TaskGuid) -> impl Future<Output = ApiResult<()>> + Send;
    /// Warnings collected since the last call (`X-Cf-Warnings`, job warnings), drained.
    fn take_warnings(&self) -> Vec<String>;
    /// Read-only, no request: the requests sent from now on belong to `phase` (the call
    /// budget). A backend that does not count ignores it.
    fn enter_phase(&self, _phase: Phase) {}
    /// Read-only, no request: the requests sent so far by phase; `None` when the backend does
    /// not count them.
    fn requests(&self) -> Option<Requests> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The methods of [`CfApi`] in this file's source, each with its doc comment.
    fn trait_methods() -> Vec<(String, String)> {
        let src = include_str!("api.rs");
        let start = src.find("pub trait CfApi").expect("the trait");
        let body = &src[start..];
        let body = &body[..body.find("\n}\n").expect("the trait's end")];
        let mut methods = Vec::new();
        let mut doc = String::new();
        for line in body.lines().map(str::trim) {
            if let Some(d) = line.strip_prefix("///") {
                doc.push_str(d);
                doc.push(' ');
            } else if let Some(rest) = line.strip_prefix("fn ") {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                methods.push((name, std::mem::take(&mut doc)));
            } else if line.starts_with("type ") {
                doc.clear();
            }
        }
        methods
    }

    #[test]
    fn mutating_methods_are_the_methods_that_post_patch_or_delete() {
        let methods = trait_methods();
        assert!(methods.len() > 40, "{methods:?}");
        let writes = |doc: &str| {
            ["`POST ", "`PATCH ", "`DELETE "]
                .iter()
                .any(|v| doc.contains(v))
        };
        for (name, doc) in &methods {
            assert!(
                name == "take_warnings"
                    || writes(doc)
                    || doc.contains("`GET ")
                    || doc.contains("Read-only"),
                "the doc of CfApi::{name} names no request and does not say it is read-only: {doc}"
            );
        }
        let mut derived: Vec<&str> = methods
            .iter()
            .filter(|(_, doc)| writes(doc))
            .map(|(name, _)| name.as_str())
            .collect();
        derived.sort_unstable();
        let mut listed = MUTATING_METHODS.to_vec();
        listed.sort_unstable();
        assert_eq!(listed, derived);
    }
}
