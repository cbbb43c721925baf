//! The deploy layer's inputs: [`DeployRequest`] (flags and target, validated) and
//! [`AppSpec`] (one app of the manifest, reduced to what the flow decides on), plus the
//! [`RenderRequest`] the flow hands back to the manifest layer to produce YAML.
//!
//! The integrator builds one [`AppSpec`] per manifest app: `routes` from `routes:` (or the
//! `no-route`/`random-route`/`default-route` keys), `instances` per process type, `source`
//! from `docker:`/`path`, and `render` wired to the manifest layer's renderer.
//!
//! Built by the command layer (`command::push::request`). Depends on: deploy::api,
//! deploy::analysis. Must not: read files or call the API.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::analysis::AnalysisConfig;
use super::api::{AppLifecycle, AppSource, DeploymentStrategy, SpaceGuid};

/// Which routes the manifest asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteSpec {
    /// Explicit `routes:` entries (`host.domain[:port][/path]`).
    Routes(Vec<String>),
    /// No `routes:`: the default route `<app>.<default domain>` (cf push's `default-route`).
    Default,
    /// `random-route: true`: the server picks a host on first push; a swap keeps the live routes.
    Random,
    /// `no-route: true`.
    NoRoute,
}

/// What the flow asks the manifest layer to render for one app: the app's manifest entry,
/// with these fields overridden. Everything else (env, services, buildpacks, processes,
/// sidecars, health checks, metadata) stays as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RenderRequest {
    /// The name to render (the candidate name during a swap).
    pub name: String,
    /// Routes to render (`routes:` replaced); empty with `no_route` means `no-route: true`.
    pub routes: Vec<String>,
    /// Render `no-route: true` (and no `routes:`).
    pub no_route: bool,
    /// Keep `random-route: true` (first deploy only).
    pub random_route: bool,
    /// Labels to add to `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// Annotations to add to `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// Instance counts to override, by process type (`--keep-scale`).
    pub instances: BTreeMap<String, u32>,
}

/// Renders the manifest YAML (a full manifest document with one app) for a [`RenderRequest`].
pub type Renderer = Arc<dyn Fn(&RenderRequest) -> Result<String, String> + Send + Sync>;

/// One app to deploy. `B` is the integrator's bits handle.
#[derive(Clone)]
pub struct AppSpec<B> {
    /// The app's name.
    pub name: String,
    /// Production routes.
    pub routes: RouteSpec,
    /// Instance counts by process type, as the manifest says (informational).
    pub instances: BTreeMap<String, u32>,
    /// Memory per instance in MB by process type, as the manifest (with `-m`) says; what
    /// the quota check counts.
    pub memory_mb: BTreeMap<String, u64>,
    /// Where the code comes from.
    pub source: AppSource<B>,
    /// The manifest asks for Cloud Native Buildpacks (`lifecycle: cnb`).
    pub cnb: bool,
    /// Produces the manifest YAML for the candidate or first push.
    pub render: Renderer,
}

impl<B> fmt::Debug for AppSpec<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppSpec")
            .field("name", &self.name)
            .field("routes", &self.routes)
            .field("instances", &self.instances)
            .field("memory_mb", &self.memory_mb)
            .field(
                "source",
                &match &self.source {
                    AppSource::Bits(_) => "bits".to_string(),
                    AppSource::Docker { image, .. } => format!("docker {image}"),
                },
            )
            .finish_non_exhaustive()
    }
}

impl<B> AppSpec<B> {
    /// The lifecycle the app is created with: docker for an image, else `cnb` when the
    /// manifest says so, else buildpacks.
    pub fn lifecycle(&self) -> AppLifecycle {
        match (&self.source, self.cnb) {
            (AppSource::Docker { .. }, _) => AppLifecycle::Docker,
            (AppSource::Bits(_), true) => AppLifecycle::Cnb,
            (AppSource::Bits(_), false) => AppLifecycle::Buildpack,
        }
    }

    /// Whether the code is a bits package (needs an upload).
    pub fn is_bits(&self) -> bool {
        matches!(self.source, AppSource::Bits(_))
    }
}

/// How the new version replaces the live one (the deploy layer's own copy of `--strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// A candidate app next to the live one, smoke test, route switch, retire the old app.
    #[default]
    BlueGreen,
    /// A Cloud Controller rolling deployment (same app GUID), watched by our monitor.
    Rolling,
    /// A Cloud Controller canary deployment, smoke-tested at each pause.
    Canary,
    /// Blue-green when the quotas leave room for the candidate, else [`AutoFallback`]; the
    /// deploy layer resolves it before planning.
    Auto,
}

impl Strategy {
    /// The flag value (`blue-green`, `rolling`, `canary`, `auto`).
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::BlueGreen => "blue-green",
            Strategy::Rolling => "rolling",
            Strategy::Canary => "canary",
            Strategy::Auto => "auto",
        }
    }
}

/// What `--strategy auto` falls back to when blue-green does not fit in the quotas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoFallback {
    /// Canary when `--instance-steps`, canary analysis or a smoke test asks for pauses (a
    /// rolling deployment has none), else rolling.
    pub strategy: DeploymentStrategy,
    /// The canary's steps (percent of instances): `--instance-steps`, else the steps of
    /// `--canary-steps` below 100.
    pub instance_steps: Vec<u32>,
    /// The most new instances at once: `--max-in-flight` when given; 1 when Cloud Controller
    /// predates `max_in_flight` (it then always starts one at a time).
    pub max_in_flight_cap: Option<u32>,
    /// Whether `max_in_flight` can be sent (Cloud Controller 3.173+).
    pub max_in_flight_supported: bool,
    /// Why Cloud Controller cannot run the fallback, when it cannot (too old).
    pub unsupported: Option<String>,
}

/// What becomes of the old app once a blue-green switch is committed (`--old-app`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OldApp {
    /// Deleted after the drain.
    #[default]
    Delete,
    /// Stopped and kept as `<app>-venerable` (what `zero-downtime-rollback` brings back).
    Stop,
    /// Kept running, unrouted, as `<app>-venerable`.
    Keep,
}

/// How the built-in smoke probe reaches the candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeConfig {
    /// `https` (default) or `http`.
    pub scheme: String,
    /// Connect here instead of resolving the route's host (a local router, the simulator).
    pub connect_to: Option<SocketAddr>,
    /// Skip TLS verification (only when the cf target says so).
    pub skip_tls_verify: bool,
    /// Timeout of one probe request.
    pub request_timeout: Duration,
    /// Pause between probe attempts.
    pub retry_interval: Duration,
    /// Attempts before the probe fails (at least 1).
    pub attempts: u32,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            scheme: "https".into(),
            connect_to: None,
            skip_tls_verify: false,
            request_timeout: Duration::from_secs(10),
            retry_interval: Duration::from_secs(2),
            attempts: 5,
        }
    }
}

/// A validated deploy request: the flags that matter to the flow and the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployRequest {
    /// Target org name (messages only).
    pub org: String,
    /// Target space name (messages only).
    pub space: String,
    /// Target space GUID.
    pub space_guid: SpaceGuid,
    /// The user (messages only).
    pub user: Option<String>,
    /// How the new version replaces the live one (`--strategy`).
    pub strategy: Strategy,
    /// `--max-in-flight` (rolling and canary deployments).
    pub max_in_flight: Option<u32>,
    /// `--instance-steps` (canary weights in percent).
    pub instance_steps: Vec<u32>,
    /// `--smoke-test CMD`.
    pub smoke_test: Option<String>,
    /// `--smoke-test-path PATH`.
    pub smoke_test_path: Option<String>,
    pub old_app: OldApp,
    /// `--drain`: the fixed drain, or the maximum of an auto drain.
    pub drain: Duration,
    /// `--drain auto`: end the drain once the routers dropped the old app and it is quiet
    /// (`deploy::drain`), after at most [`DeployRequest::drain`].
    pub drain_auto: bool,
    /// `--timeout`: stall timeout of staging and of the health wait.
    pub timeout: Duration,
    /// Bound of the `--smoke-test` command.
    pub smoke_timeout: Duration,
    /// Poll interval of staging and health waits.
    pub poll_interval: Duration,
    pub keep_scale: bool,
    pub temp_route_suffix: String,
    pub dry_run: bool,
    /// The built-in probe's connection settings.
    pub probe: ProbeConfig,
    /// Canary analysis (`--analysis`, `--canary-steps`), when asked for.
    pub analysis: Option<AnalysisConfig>,
    /// `--strategy auto`'s fallback (`None` for the other strategies).
    pub fallback: Option<AutoFallback>,
    /// Who runs the deploy, `user@host`, as the lock shows it to other runs.
    pub run_by: String,
    /// `--wait-for-lock`: how long to wait for another run of the same app to end (zero:
    /// refuse at once).
    pub wait_for_lock: Duration,
    /// `--task-before-switch`, `--task-after-switch` and their limits.
    pub tasks: TaskRequest,
    /// `--parallel`: how many apps of a blue-green deploy are prepared, verified and retired
    /// at a time (1: one after the other, in plan order; 0 counts as 1).
    pub parallel: usize,
}

/// `--parallel`'s default.
pub const DEFAULT_PARALLEL: usize = 4;

/// The release tasks run on the new version before and after the switch (blue-green only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRequest {
    /// The commands, in order (`--task-before-switch`, repeatable).
    pub before_switch: Vec<String>,
    /// The commands run once the switch and the retire are done, in order
    /// (`--task-after-switch`, repeatable); a failure is reported, not rolled back.
    pub after_switch: Vec<String>,
    /// `--task-memory`, MB (`None`: the platform's default).
    pub memory_mb: Option<u64>,
    /// `--task-disk`, MB (`None`: the platform's default).
    pub disk_mb: Option<u64>,
    /// `--task-timeout`: the longest run of one task.
    pub timeout: Duration,
}

pub const DEFAULT_TASK_TIMEOUT: Duration = Duration::from_secs(600);

impl Default for TaskRequest {
    fn default() -> Self {
        TaskRequest {
            before_switch: Vec::new(),
            after_switch: Vec::new(),
            memory_mb: None,
            disk_mb: None,
            timeout: DEFAULT_TASK_TIMEOUT,
        }
    }
}

impl DeployRequest {
    /// A blue-green request with small waits, for the planners' unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests() -> DeployRequest {
        DeployRequest {
            org: "o".into(),
            space: "s".into(),
            space_guid: "sg".into(),
            user: None,
            strategy: Strategy::BlueGreen,
            max_in_flight: None,
            instance_steps: Vec::new(),
            smoke_test: None,
            smoke_test_path: None,
            old_app: OldApp::Delete,
            drain: Duration::from_secs(5),
            drain_auto: false,
            timeout: Duration::from_secs(60),
            smoke_timeout: Duration::from_secs(60),
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
            parallel: DEFAULT_PARALLEL,
        }
    }

    /// Whether any smoke test is configured.
    pub fn has_smoke_test(&self) -> bool {
        self.smoke_test.is_some() || self.smoke_test_path.is_some()
    }
}
