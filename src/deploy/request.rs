//! The deploy layer's inputs: [`DeployRequest`] (flags and target, validated) and
//! [`AppSpec`] (one app of the manifest, reduced to what the flow decides on), plus the
//! [`RenderRequest`] the flow hands back to the manifest layer to produce YAML.
//!
//! The integrator builds one [`AppSpec`] per manifest app: `routes` from `routes:` (or the
//! `no-route`/`random-route`/`default-route` keys), `instances` per process type, `source`
//! from `docker:`/`path`, and `render` wired to the manifest layer's renderer.
//!
//! Depends on: cli::args (flags), cf::target (org/space/user). Must not: read files or call the API.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::cf::Target;
use crate::cli::{self, PushArgs};

use super::analysis::{AnalysisConfig, canary_steps};
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

impl From<cli::Strategy> for Strategy {
    fn from(s: cli::Strategy) -> Self {
        match s {
            cli::Strategy::BlueGreen => Strategy::BlueGreen,
            cli::Strategy::Rolling => Strategy::Rolling,
            cli::Strategy::Canary => Strategy::Canary,
            cli::Strategy::Auto => Strategy::Auto,
        }
    }
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

impl From<cli::OldApp> for OldApp {
    fn from(o: cli::OldApp) -> Self {
        match o {
            cli::OldApp::Delete => OldApp::Delete,
            cli::OldApp::Stop => OldApp::Stop,
            cli::OldApp::Keep => OldApp::Keep,
        }
    }
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
    /// `--old-app`.
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
    /// `--keep-scale`.
    pub keep_scale: bool,
    /// `--temp-route-suffix`.
    pub temp_route_suffix: String,
    /// `--dry-run`.
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
    /// `--task-before-switch` and its limits.
    pub tasks: TaskRequest,
}

/// The release tasks run on the new version before the switch (blue-green only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRequest {
    /// The commands, in order (`--task-before-switch`, repeatable).
    pub before_switch: Vec<String>,
    /// `--task-memory`, MB (`None`: the platform's default).
    pub memory_mb: Option<u64>,
    /// `--task-disk`, MB (`None`: the platform's default).
    pub disk_mb: Option<u64>,
    /// `--task-timeout`: the longest run of one task.
    pub timeout: Duration,
}

/// The default of `--task-timeout`.
pub const DEFAULT_TASK_TIMEOUT: Duration = Duration::from_secs(600);

impl Default for TaskRequest {
    fn default() -> Self {
        TaskRequest {
            before_switch: Vec::new(),
            memory_mb: None,
            disk_mb: None,
            timeout: DEFAULT_TASK_TIMEOUT,
        }
    }
}

/// Why a request could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// No space is targeted.
    #[error("no space targeted: use 'cf target -s SPACE'")]
    NoSpace,
    /// The temp route suffix would make an invalid host.
    #[error("--temp-route-suffix '{0}' is not valid in a host name (letters, digits and '-' only)")]
    BadSuffix(String),
    /// The smoke-test path does not start with `/`.
    #[error("--smoke-test-path '{0}' must start with '/'")]
    BadSmokePath(String),
    /// A canary analysis flag is out of range or does not fit the strategy.
    #[error("{0}")]
    BadAnalysis(String),
    /// `--task-before-switch` with a strategy whose new version serves before a task could run.
    #[error(
        "--task-before-switch needs --strategy blue-green: with --strategy {0} the new version serves requests before a task could run on it"
    )]
    TasksNeedBlueGreen(String),
    /// A `--task-before-switch` command is empty.
    #[error("--task-before-switch: the command is empty")]
    EmptyTask,
    /// `--smoke-test-router` is not a `HOST:PORT` that resolves.
    #[error("--smoke-test-router '{value}': {reason}")]
    BadSmokeRouter {
        /// The flag's value.
        value: String,
        /// Why it cannot be used.
        reason: String,
    },
}

/// The canary analysis settings of the flags: `None` unless `--analysis` or `--canary-steps`
/// asks for it; unset values take [`AnalysisConfig::default`]'s.
fn analysis_config(args: &PushArgs) -> Result<Option<AnalysisConfig>, RequestError> {
    args.validate_analysis()
        .map_err(RequestError::BadAnalysis)?;
    if !args.analysis_enabled() {
        return Ok(None);
    }
    let d = AnalysisConfig::default();
    let steps = if args.canary_steps.is_empty() {
        d.steps.clone()
    } else {
        canary_steps(&args.canary_steps).map_err(RequestError::BadAnalysis)?
    };
    Ok(Some(AnalysisConfig {
        steps,
        interval: args.analysis_interval.unwrap_or(d.interval),
        max_error_ppm: args.max_error_rate.unwrap_or(d.max_error_ppm),
        error_margin_ppm: args.error_rate_margin.unwrap_or(d.error_margin_ppm),
        max_p99: args.max_p99,
        max_p99_ratio_milli: args.max_p99_ratio,
        min_requests: args.min_requests.unwrap_or(d.min_requests),
        no_traffic: args.analysis_no_traffic,
    }))
}

/// `--strategy auto`'s fallback from the flags (Cloud Controller's support is checked later,
/// by the integrator).
fn auto_fallback(args: &PushArgs, analysis: Option<&AnalysisConfig>) -> AutoFallback {
    let smoke = args.smoke_test.is_some() || args.smoke_test_path.is_some();
    let pauses = !args.instance_steps.is_empty() || analysis.is_some() || smoke;
    let instance_steps = if args.instance_steps.is_empty() {
        analysis
            .map(|a| a.steps.iter().copied().filter(|w| *w < 100).collect())
            .unwrap_or_default()
    } else {
        args.instance_steps.clone()
    };
    AutoFallback {
        strategy: if pauses {
            DeploymentStrategy::Canary
        } else {
            DeploymentStrategy::Rolling
        },
        instance_steps,
        max_in_flight_cap: args.max_in_flight,
        max_in_flight_supported: true,
        unsupported: None,
    }
}

/// Resolves `--smoke-test-router HOST:PORT` to the address the probe dials.
fn smoke_router(value: &str) -> Result<SocketAddr, RequestError> {
    use std::net::ToSocketAddrs as _;
    let bad = |reason: String| RequestError::BadSmokeRouter {
        value: value.to_string(),
        reason,
    };
    if value
        .rsplit_once(':')
        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    {
        return Err(bad("expected HOST:PORT, e.g. 127.0.0.1:8081".into()));
    }
    value
        .to_socket_addrs()
        .map_err(|e| bad(format!("cannot resolve it: {e}")))?
        .next()
        .ok_or_else(|| bad("it resolves to no address".into()))
}

/// `user@host` for the lock: the targeted user (else `$USER`) and this machine's name.
fn run_by(user: Option<&str>) -> String {
    let user = user
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown".into());
    format!("{user}@{}", host_name().unwrap_or_else(|| "unknown".into()))
}

/// This machine's name (`gethostname`), `None` when it cannot be read.
fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the call; gethostname
    // writes at most that many bytes, and only the bytes before the first NUL are read.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    (!name.is_empty()).then_some(name)
}

impl DeployRequest {
    /// Builds a request from the push flags and the target.
    ///
    /// # Errors
    /// No targeted space, an invalid temp-route suffix or smoke-test path.
    pub fn from_args(args: &PushArgs, target: &Target) -> Result<DeployRequest, RequestError> {
        let space = target.space.as_ref().ok_or(RequestError::NoSpace)?;
        let suffix = &args.temp_route_suffix;
        if suffix.is_empty()
            || !suffix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(RequestError::BadSuffix(suffix.clone()));
        }
        if let Some(p) = &args.smoke_test_path
            && !p.starts_with('/')
        {
            return Err(RequestError::BadSmokePath(p.clone()));
        }
        if !args.task_before_switch.is_empty() {
            if args.task_before_switch.iter().any(|c| c.trim().is_empty()) {
                return Err(RequestError::EmptyTask);
            }
            if args.strategy != cli::Strategy::BlueGreen {
                let name = clap::ValueEnum::to_possible_value(&args.strategy)
                    .map(|v| v.get_name().to_string())
                    .unwrap_or_default();
                return Err(RequestError::TasksNeedBlueGreen(name));
            }
        }
        let analysis = analysis_config(args)?;
        let fallback =
            (args.strategy == cli::Strategy::Auto).then(|| auto_fallback(args, analysis.as_ref()));
        Ok(DeployRequest {
            org: target
                .org
                .as_ref()
                .map(|o| o.name.clone())
                .unwrap_or_default(),
            space: space.name.clone(),
            space_guid: SpaceGuid::new(space.guid.as_str()),
            user: target.user.clone(),
            strategy: args.strategy.into(),
            max_in_flight: args.max_in_flight,
            instance_steps: args.instance_steps.clone(),
            smoke_test: args.smoke_test.clone(),
            smoke_test_path: args.smoke_test_path.clone(),
            old_app: args.old_app.into(),
            drain: args.drain.max,
            drain_auto: args.drain.auto,
            timeout: args.timeout,
            smoke_timeout: args.smoke_test_timeout,
            poll_interval: Duration::from_secs(1),
            keep_scale: args.keep_scale,
            temp_route_suffix: suffix.clone(),
            dry_run: args.dry_run,
            probe: ProbeConfig {
                scheme: args.smoke_test_scheme.as_str().to_string(),
                connect_to: args
                    .smoke_test_router
                    .as_deref()
                    .map(smoke_router)
                    .transpose()?,
                skip_tls_verify: target.skip_ssl_validation,
                ..ProbeConfig::default()
            },
            analysis,
            fallback,
            run_by: run_by(target.user.as_deref()),
            wait_for_lock: args.wait_for_lock,
            tasks: TaskRequest {
                before_switch: args.task_before_switch.clone(),
                memory_mb: args.task_memory,
                disk_mb: args.task_disk,
                timeout: args.task_timeout,
            },
        })
    }

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
        }
    }

    /// Whether any smoke test is configured.
    pub fn has_smoke_test(&self) -> bool {
        self.smoke_test.is_some() || self.smoke_test_path.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cf::NamedGuid;

    fn target() -> Target {
        Target {
            api_endpoint: "https://api.example.com".into(),
            skip_ssl_validation: true,
            org: Some(NamedGuid {
                name: "o".into(),
                guid: "og".into(),
            }),
            space: Some(NamedGuid {
                name: "s".into(),
                guid: "sg".into(),
            }),
            user: Some("alice".into()),
        }
    }

    #[test]
    fn release_tasks_are_blue_green_only_and_carry_their_limits() {
        let args = PushArgs {
            temp_route_suffix: "-temp".into(),
            task_before_switch: vec!["bin/rails db:migrate".into()],
            task_memory: Some(512),
            task_timeout: Duration::from_secs(90),
            ..PushArgs::default()
        };
        let r = DeployRequest::from_args(&args, &target()).unwrap();
        assert_eq!(r.tasks.before_switch, ["bin/rails db:migrate"]);
        assert_eq!(
            (r.tasks.memory_mb, r.tasks.disk_mb, r.tasks.timeout),
            (Some(512), None, Duration::from_secs(90))
        );
        for (strategy, name) in [
            (cli::Strategy::Rolling, "rolling"),
            (cli::Strategy::Canary, "canary"),
            (cli::Strategy::Auto, "auto"),
        ] {
            let e = DeployRequest::from_args(
                &PushArgs {
                    strategy,
                    ..args.clone()
                },
                &target(),
            )
            .unwrap_err();
            assert_eq!(e, RequestError::TasksNeedBlueGreen(name.into()));
            assert!(
                e.to_string()
                    .contains("the new version serves requests before a task could run"),
                "{e}"
            );
        }
        let e = DeployRequest::from_args(
            &PushArgs {
                task_before_switch: vec!["  ".into()],
                ..args.clone()
            },
            &target(),
        )
        .unwrap_err();
        assert_eq!(e, RequestError::EmptyTask);
    }

    #[test]
    fn smoke_test_router_and_scheme_reach_the_probe() {
        let args = PushArgs {
            temp_route_suffix: "-temp".into(),
            smoke_test_router: Some("127.0.0.1:8081".into()),
            smoke_test_scheme: cli::SmokeScheme::Http,
            ..PushArgs::default()
        };
        let r = DeployRequest::from_args(&args, &target()).unwrap();
        assert_eq!(r.probe.scheme, "http");
        assert_eq!(
            r.probe.connect_to,
            Some(SocketAddr::from(([127, 0, 0, 1], 8081)))
        );
        let r = DeployRequest::from_args(
            &PushArgs {
                temp_route_suffix: "-temp".into(),
                ..PushArgs::default()
            },
            &target(),
        )
        .unwrap();
        assert_eq!(
            (r.probe.scheme.as_str(), r.probe.connect_to),
            ("https", None)
        );
        for bad in ["router", "router:", ":80", "127.0.0.1:99999"] {
            let e = DeployRequest::from_args(
                &PushArgs {
                    temp_route_suffix: "-temp".into(),
                    smoke_test_router: Some(bad.into()),
                    ..PushArgs::default()
                },
                &target(),
            )
            .unwrap_err();
            assert!(
                e.to_string()
                    .starts_with(&format!("--smoke-test-router '{bad}'")),
                "{e}"
            );
        }
    }

    #[test]
    fn request_takes_flags_and_target() {
        let args = PushArgs {
            temp_route_suffix: "-temp".into(),
            drain: crate::cli::DrainArg::fixed(Duration::from_secs(3)),
            smoke_test_path: Some("/health".into()),
            max_in_flight: Some(3),
            instance_steps: vec![10, 50],
            ..PushArgs::default()
        };
        let r = DeployRequest::from_args(&args, &target()).unwrap();
        assert_eq!(r.max_in_flight, Some(3));
        assert_eq!(r.instance_steps, vec![10, 50]);
        assert_eq!(r.space_guid, "sg");
        assert_eq!(r.org, "o");
        assert_eq!(r.drain, Duration::from_secs(3));
        assert!(r.probe.skip_tls_verify);
        assert!(r.has_smoke_test());
    }

    #[test]
    fn analysis_flags_make_a_config_with_defaults() {
        let base = PushArgs {
            temp_route_suffix: "-temp".into(),
            ..PushArgs::default()
        };
        assert_eq!(
            DeployRequest::from_args(&base, &target()).unwrap().analysis,
            None
        );
        let args = PushArgs {
            canary_steps: vec![25],
            analysis_interval: Some(Duration::from_secs(1)),
            max_p99: Some(Duration::from_millis(300)),
            ..base.clone()
        };
        let a = DeployRequest::from_args(&args, &target())
            .unwrap()
            .analysis
            .unwrap();
        assert_eq!(a.steps, vec![25, 100]);
        assert_eq!(a.interval, Duration::from_secs(1));
        assert_eq!(a.max_error_ppm, 10_000);
        assert_eq!(a.min_requests, 20);
        assert_eq!(a.max_p99, Some(Duration::from_millis(300)));
        let args = PushArgs {
            analysis: true,
            ..base.clone()
        };
        let a = DeployRequest::from_args(&args, &target())
            .unwrap()
            .analysis
            .unwrap();
        assert_eq!(a.steps, vec![10, 50, 100]);
        assert_eq!(a.interval, Duration::from_secs(30));
        for (bad, says) in [
            (
                PushArgs {
                    canary_steps: vec![50, 10],
                    ..base.clone()
                },
                "go up strictly",
            ),
            (
                PushArgs {
                    canary_steps: vec![10],
                    strategy: cli::Strategy::Canary,
                    ..base.clone()
                },
                "--instance-steps",
            ),
            (
                PushArgs {
                    analysis: true,
                    strategy: cli::Strategy::Rolling,
                    ..base.clone()
                },
                "never pauses",
            ),
            (
                PushArgs {
                    analysis: true,
                    analysis_interval: Some(Duration::ZERO),
                    ..base.clone()
                },
                "--analysis-interval",
            ),
        ] {
            let e = DeployRequest::from_args(&bad, &target()).unwrap_err();
            assert!(e.to_string().contains(says), "{e}");
            assert!(bad.validate().is_err());
        }
    }

    #[test]
    fn request_rejects_bad_inputs() {
        let mut args = PushArgs {
            temp_route_suffix: "-temp".into(),
            ..PushArgs::default()
        };
        let mut t = target();
        t.space = None;
        assert_eq!(
            DeployRequest::from_args(&args, &t),
            Err(RequestError::NoSpace)
        );
        args.temp_route_suffix = ".x".into();
        assert!(matches!(
            DeployRequest::from_args(&args, &target()),
            Err(RequestError::BadSuffix(_))
        ));
        args.temp_route_suffix = "-t".into();
        args.smoke_test_path = Some("health".into());
        assert!(matches!(
            DeployRequest::from_args(&args, &target()),
            Err(RequestError::BadSmokePath(_))
        ));
    }
}
