//! `zero-downtime-push`: its flags ([`PushArgs`]), the preflight (manifest, flags, app bits,
//! client, API discovery, the Cloud Controller version check of rolling/canary), then
//! [`crate::deploy::run`] on a [`CfBackend`]. [`run`] is where the plugin and the standalone
//! binary both end; [`push`] is the same without signals and stdout, for tests and the demo.
//!
//! Every preflight failure ends the same way: an [`Event::Started`] naming the target (when the
//! app names are known), an [`Event::Finished`] with [`Outcome::NothingChanged`] and the error
//! (manifest errors carry their `file:line:column`). Manifest, flag and app-bits errors are
//! found before any request is made; the first request is the API discovery.
//!
//! Depends on: cf (client), manifest, package (scan), deploy, ui (the reporter of [`run`]).
//! Prints only through `ui`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cf;
use crate::manifest::{self, AppBits, AppManifest, FlagOverrides, LoadOptions, Manifest};
use crate::package;

use super::Login;
use super::adapter::CfBackend;
use super::flags::spelled;
use super::session::{self, ConnectError, LiveNotices, SharedReporter, refuse};
use crate::deploy::Interrupt;
use crate::deploy::api::AppSource;
use crate::deploy::api::DeploymentStrategy;
use crate::deploy::event::{Event, Outcome, Reporter};
use crate::deploy::request::{AppSpec, AutoFallback, DeployRequest, ProbeConfig};

pub mod args;
mod from_manifest;
pub mod request;

pub use args::{HealthCheckType, Lifecycle, PluginPush, PushArgs};
use request::{RequestError, deploy_request};

/// The environment variable holding the docker registry password (as in the cf CLI).
pub const DOCKER_PASSWORD_ENV: &str = "CF_DOCKER_PASSWORD";

/// Everything a push needs besides the reporter and the cancellation token.
#[derive(Debug)]
pub struct PushOptions {
    /// The target and its tokens.
    pub login: Login,
    /// The command-line flags.
    pub args: PushArgs,
    /// The working directory (base of `-f`, `-p` and of apps without `path`).
    pub cwd: PathBuf,
    /// Poll interval of the deploy's waits and of the backend's job/package waits (1 s).
    pub poll_interval: Duration,
    /// Overrides the smoke probe's connection settings (e.g. the simulator's router).
    pub probe: Option<ProbeConfig>,
    /// The docker registry password; [`PushOptions::new`] reads `CF_DOCKER_PASSWORD`.
    pub docker_password: Option<SecretString>,
}

impl PushOptions {
    /// Options with a 1 s poll interval, the default probe, and the docker password from
    /// `CF_DOCKER_PASSWORD` (when set and not empty).
    pub fn new(
        target: cf::Target,
        token: Arc<dyn cf::TokenProvider>,
        args: PushArgs,
        cwd: PathBuf,
    ) -> Self {
        let docker_password = std::env::var(DOCKER_PASSWORD_ENV)
            .ok()
            .filter(|p| !p.is_empty())
            .map(SecretString::from);
        PushOptions {
            login: Login { target, token },
            args,
            cwd,
            poll_interval: Duration::from_secs(1),
            probe: None,
            docker_password,
        }
    }
}

/// Why a push stopped before changing anything.
#[derive(Debug, thiserror::Error)]
enum Preflight {
    #[error(transparent)]
    Manifest(#[from] manifest::Error),
    #[error(
        "no app name given and no manifest.yml in '{}': name the app or use -f",
        cwd.display()
    )]
    NoManifest { cwd: PathBuf },
    #[error("app '{app}' has neither a path nor a docker image")]
    NoSource { app: String },
    #[error("app '{app}': cannot read the app bits")]
    Bits {
        app: String,
        #[source]
        source: package::Error,
    },
    #[error("app '{app}': reading the app bits stopped unexpectedly")]
    ScanTask { app: String },
    #[error(
        "app '{app}': environment variable {DOCKER_PASSWORD_ENV} not set (needed with a docker username)"
    )]
    DockerPassword { app: String },
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The client could not be set up or the API not reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{0}")]
    Flags(String),
    #[error("--strategy {strategy} cannot be used with the cloud controller at {endpoint}")]
    Version {
        strategy: String,
        endpoint: String,
        #[source]
        source: Box<cf::Error>,
    },
    #[error("interrupted before anything was changed")]
    Cancelled,
}

struct Prepared {
    backend: CfBackend,
    request: DeployRequest,
    apps: Vec<AppSpec<package::Scan>>,
    warnings: Vec<String>,
}

/// Runs a zero-downtime push: preflight, then the deploy with the chosen strategy. Reports every event to
/// `reporter`, always ending with [`Event::Finished`], and returns the outcome.
pub async fn push(
    opts: PushOptions,
    reporter: &mut dyn Reporter,
    interrupt: impl Into<crate::deploy::Interrupt>,
) -> Outcome {
    let interrupt = interrupt.into();
    let cancel = interrupt.stop_token();
    let started = Instant::now();
    let mut names: Vec<String> = opts.args.app_name.iter().cloned().collect();
    match prepare(&opts, &mut names, cancel).await {
        Ok(p) => {
            let mut r = WarnAfterStart {
                inner: reporter,
                pending: p.warnings,
            };
            let notices = LiveNotices::attach(p.backend.client());
            let shared = std::sync::Mutex::new(&mut r as &mut dyn Reporter);
            let run = async {
                let mut r = SharedReporter(&shared);
                crate::deploy::run(&p.backend, &p.request, &p.apps, &mut r, &interrupt).await
            };
            notices.around(&shared, run).await
        }
        Err((e, warnings)) => refuse(
            reporter,
            &opts.login.target,
            names,
            opts.args.strategy.as_str(),
            warnings,
            &e,
            started,
        ),
    }
}

/// Forwards events, sending the manifest warnings right after [`Event::Started`].
struct WarnAfterStart<'a> {
    inner: &'a mut dyn Reporter,
    pending: Vec<String>,
}

impl Reporter for WarnAfterStart<'_> {
    fn report(&mut self, event: Event) {
        let started = matches!(event, Event::Started { .. });
        self.inner.report(event);
        if started {
            for message in std::mem::take(&mut self.pending) {
                self.inner.report(Event::Warning { app: None, message });
            }
        }
    }
}

/// Rejects deployment flags that do not fit the strategy (as `cf push` does).
fn check_strategy_flags(args: &PushArgs) -> Result<(), Preflight> {
    use crate::deploy::Strategy;
    if args.max_in_flight.is_some() && args.strategy == Strategy::BlueGreen {
        return Err(Preflight::Flags(
            "--max-in-flight applies to --strategy rolling or canary only".into(),
        ));
    }
    if !args.instance_steps.is_empty() {
        if !matches!(args.strategy, Strategy::Canary | Strategy::Auto) {
            return Err(Preflight::Flags(
                "--instance-steps applies to --strategy canary (or auto) only".into(),
            ));
        }
        let ok = args.instance_steps.iter().all(|w| (1..=100).contains(w))
            && args.instance_steps.windows(2).all(|p| p[0] < p[1]);
        if !ok {
            return Err(Preflight::Flags(format!(
                "--instance-steps {}: each step is a percentage from 1 to 100, in ascending order",
                args.instance_steps
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            )));
        }
    }
    Ok(())
}

/// Narrows `--strategy auto`'s fallback to what the target's Cloud Controller supports: no
/// deployments at all (it is then refused with the reason), no canary deployments or canary
/// steps (refused too: the pauses were asked for), no `max_in_flight` (one at a time). An
/// unknown version is taken to support everything (Cloud Controller refuses what it lacks).
fn fallback_support(fallback: &mut AutoFallback, client: &cf::Client) {
    if client.api_version().is_none() {
        return;
    }
    let mut needed = vec![cf::Feature::DeploymentStrategy];
    if fallback.strategy == DeploymentStrategy::Canary {
        needed.push(cf::Feature::CanaryDeployments);
        if !fallback.instance_steps.is_empty() {
            needed.push(cf::Feature::CanarySteps);
        }
    }
    for feature in needed {
        if let Err(e) = client.require(feature) {
            fallback.unsupported = Some(e.to_string());
            return;
        }
    }
    fallback.max_in_flight_supported = client.require(cf::Feature::MaxInFlight).is_ok();
}

/// The Cloud Controller features the strategy and its flags need.
fn required_features(args: &PushArgs) -> Vec<cf::Feature> {
    use crate::deploy::Strategy;
    let mut f = Vec::new();
    match args.strategy {
        // Auto's fallback is checked when it is chosen (see `fallback_support`).
        Strategy::BlueGreen | Strategy::Auto => return f,
        Strategy::Rolling => f.push(cf::Feature::DeploymentStrategy),
        Strategy::Canary => {
            f.push(cf::Feature::DeploymentStrategy);
            f.push(cf::Feature::CanaryDeployments);
        }
    }
    if args.max_in_flight.is_some() {
        f.push(cf::Feature::MaxInFlight);
    }
    if !args.instance_steps.is_empty() {
        f.push(cf::Feature::CanarySteps);
    }
    f
}

/// Loads the manifest the way `cf push` picks it (none with `--no-manifest`), after checking the
/// flags among themselves, and applies the `cf push` flags to it.
fn load_manifest(args: &PushArgs, cwd: &Path) -> Result<Manifest, Preflight> {
    args.validate().map_err(Preflight::Flags)?;
    let load = LoadOptions {
        vars_files: args.vars_files.iter().map(|f| cwd.join(f)).collect(),
        vars: args.vars.clone(),
        cwd: cwd.to_path_buf(),
    };
    let found = if args.no_manifest {
        None
    } else {
        manifest::locate(cwd)
    };
    let mut m = match (&args.manifest, found, &args.app_name) {
        (Some(file), _, _) => manifest::load(&cwd.join(file), &load)?,
        (None, Some(found), _) => manifest::load(&found, &load)?,
        (None, None, Some(name)) => manifest::without_file(name, &load),
        (None, None, None) if args.no_manifest => {
            return Err(Preflight::Flags(
                "incorrect usage: --no-manifest needs the app name (cf zdp APP_NAME --no-manifest)"
                    .into(),
            ));
        }
        (None, None, None) => {
            return Err(Preflight::NoManifest {
                cwd: cwd.to_path_buf(),
            });
        }
    };
    m.apply_flags(args.app_name.as_deref(), &flag_overrides(args))?;
    Ok(m)
}

/// The `cf push` flags that change the manifest sent to Cloud Controller.
fn flag_overrides(args: &PushArgs) -> FlagOverrides {
    FlagOverrides {
        path: args.path.clone(),
        docker_image: args.docker_image.clone(),
        docker_username: args.docker_username.clone(),
        stack: args.stack.clone(),
        buildpacks: args.buildpacks.clone(),
        start_command: args.start_command.clone(),
        instances: args.instances,
        memory: args.memory.clone(),
        disk: args.disk.clone(),
        log_rate_limit: args.log_rate_limit.clone(),
        health_check_type: args.health_check_type.as_ref().map(spelled),
        health_check_endpoint: args.endpoint.clone(),
        app_start_timeout: args.app_start_timeout,
        no_route: args.no_route,
        random_route: args.random_route,
        lifecycle: args.lifecycle.as_ref().map(spelled),
    }
}

/// The CF_TRACE file, when CF_TRACE names one (it is left out of the app bits).
fn trace_file() -> Option<PathBuf> {
    let v = std::env::var("CF_TRACE").ok()?;
    let t = v.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("true") || t.eq_ignore_ascii_case("false") {
        None
    } else {
        Some(PathBuf::from(t))
    }
}

async fn scan(app: &AppManifest, bits: &AppBits) -> Result<package::Scan, Preflight> {
    let source = match bits {
        AppBits::Directory(p) => package::AppSource::Directory(p.clone()),
        AppBits::Archive(p) => package::AppSource::Archive(p.clone()),
    };
    let options = package::ScanOptions {
        trace_file: trace_file(),
    };
    tokio::task::spawn_blocking(move || package::scan_with(&source, &options))
        .await
        .map_err(|_| Preflight::ScanTask {
            app: app.name.clone(),
        })?
        .map_err(|source| Preflight::Bits {
            app: app.name.clone(),
            source,
        })
}

async fn prepare(
    opts: &PushOptions,
    names: &mut Vec<String>,
    cancel: &CancellationToken,
) -> Result<Prepared, (Preflight, Vec<String>)> {
    let mut warnings = Vec::new();
    let r = tokio::select! {
        biased;
        () = cancel.cancelled() => Err(Preflight::Cancelled),
        r = prepare_inner(opts, names, &mut warnings) => r,
    };
    r.map_err(|e| (e, std::mem::take(&mut warnings)))
}

async fn prepare_inner(
    opts: &PushOptions,
    names: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Result<Prepared, Preflight> {
    let args = &opts.args;
    let m = load_manifest(args, &opts.cwd)?;
    warnings.extend(m.warnings.iter().cloned());
    let selected = m.select(args.app_name.as_deref())?;
    *names = selected.iter().map(|a| a.name.clone()).collect();
    check_strategy_flags(args)?;
    let mut request = deploy_request(args, &opts.login.target)?;
    request.poll_interval = opts.poll_interval;
    if let Some(probe) = &opts.probe {
        request.probe = probe.clone();
    }

    let mut apps = Vec::with_capacity(selected.len());
    for app in selected {
        let source = if let Some(docker) = from_manifest::docker_source(app) {
            if app.docker.as_ref().is_some_and(|d| d.username.is_some())
                && opts.docker_password.is_none()
            {
                return Err(Preflight::DockerPassword {
                    app: app.name.clone(),
                });
            }
            docker
        } else if let Some(bits) = &app.bits {
            AppSource::Bits(scan(app, bits).await?)
        } else {
            return Err(Preflight::NoSource {
                app: app.name.clone(),
            });
        };
        apps.push(from_manifest::app_spec(app, source));
    }

    let client = session::connect(
        &opts.login.target,
        &opts.login.token,
        args.common.api_outage_budget,
    )
    .await?;
    for feature in required_features(args) {
        client
            .require(feature)
            .map_err(|source| Preflight::Version {
                strategy: args.strategy.as_str().to_string(),
                endpoint: opts.login.target.api_endpoint.clone(),
                source: Box::new(source),
            })?;
    }
    if let Some(fallback) = &mut request.fallback {
        fallback_support(fallback, &client);
    }
    let backend = session::backend(client, &opts.login.target, &request, opts.poll_interval)
        .with_docker_password(opts.docker_password.clone());
    Ok(Prepared {
        backend,
        request,
        apps,
        warnings: std::mem::take(warnings),
    })
}

/// Runs a zero-downtime push for `login` and returns the process exit code: success only when
/// the new version is deployed (or for a dry run). The first SIGINT, SIGTERM or SIGHUP stops
/// it safely, the second stops the waits; events are printed as `--output` says.
///
/// Under the cf CLI, Ctrl-C ends cf at once (it has no signal handler while a plugin runs) and
/// the shell prompt may be back before the rollback is done: the first signal is acknowledged
/// on stderr at once.
pub async fn run(args: PushArgs, login: Login) -> ExitCode {
    let interrupt = Interrupt::new();
    let signals = tokio::spawn(session::interrupt_on_signals(interrupt.clone()));
    let mut reporter = crate::ui::stdout_reporter(args.common.output);
    // Without a working directory, relative paths resolve against "." as the OS does.
    let cwd = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let opts = PushOptions::new(login.target, login.token, args, cwd);
    let outcome = push(opts, reporter.as_mut(), &interrupt).await;
    signals.abort();
    ExitCode::from(outcome.exit_code())
}
