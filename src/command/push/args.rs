//! The flags of `zero-downtime-push` (plugin) and `cf-zero-downtime push` (standalone).
//!
//! The same [`PushArgs`] serves both; the plugin metadata's usage and options are derived
//! from it so `cf help zero-downtime-push` always matches what is parsed.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, ValueEnum};

use super::super::flags::{
    ANALYSIS_HEADING, CommonFlags, DEPLOY_HEADING, parse_duration, parse_megabytes, parse_parallel,
    parse_percent_ppm, parse_ratio_milli,
};
use crate::deploy::analysis::{AnalysisNoTraffic, canary_steps};
use crate::deploy::{OldApp, Strategy};

/// `--lifecycle`: how the app is staged and run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lifecycle {
    /// Classic buildpacks.
    Buildpack,
    /// A docker image.
    Docker,
    /// Cloud Native Buildpacks.
    Cnb,
}

/// `-u`/`--health-check-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HealthCheckType {
    /// The app's process is running.
    Process,
    /// The app accepts TCP connections on its port (Cloud Foundry's default).
    Port,
    /// The app answers `--endpoint` with a 200.
    Http,
}

/// Flags that exclude each other, by argument id; the usage shows them as `[a | b]`.
pub(crate) const ALTERNATIVES: [(&str, &str); 2] =
    [("manifest", "no_manifest"), ("no_route", "random_route")];

/// Flags of `cf push` that are parsed only to be refused with a reason (see
/// [`PushArgs::validate`]); the usage line leaves them out, the options list keeps them.
pub(crate) const REFUSED: [&str; 4] = ["no_start", "no_wait", "task", "droplet"];

/// Arguments of a zero-downtime push.
///
/// The `cf push` flags come first, in the order of `cf help push`, with the cf CLI's short
/// forms and meanings; the flags of the deploy itself follow under the heading "Zero-downtime options".
///
/// Its `Debug` shows the names of `--var`s, never their values.
#[derive(Clone, Args, Default)]
pub struct PushArgs {
    /// App to push (default: every app in the manifest).
    #[arg(value_name = "APP_NAME")]
    pub app_name: Option<String>,

    /// Custom buildpack by name or Git URL (repeatable); 'default' or 'null' uses auto-detection.
    #[arg(short = 'b', long = "buildpack", value_name = "BUILDPACK_NAME")]
    pub buildpacks: Vec<String>,

    /// Startup command; 'null' or 'default' resets it to the detected start command.
    #[arg(short = 'c', long = "start-command", value_name = "COMMAND")]
    pub start_command: Option<String>,

    /// Path to the manifest.
    #[arg(short = 'f', long = "manifest", value_name = "MANIFEST_PATH")]
    pub manifest: Option<PathBuf>,

    /// Ignore the manifest file.
    #[arg(long = "no-manifest")]
    pub no_manifest: bool,

    /// App lifecycle type to stage and run the app.
    #[arg(long = "lifecycle", value_enum)]
    pub lifecycle: Option<Lifecycle>,

    /// Refused: a zero-downtime push must start the new version to health-check it and switch to it.
    #[arg(long = "no-start")]
    pub no_start: bool,

    /// Refused: the deploy waits for every instance to decide between switching and rolling back.
    #[arg(long = "no-wait")]
    pub no_wait: bool,

    /// Number of instances of the web process.
    #[arg(short = 'i', long = "instances", value_name = "NUM_INSTANCES")]
    pub instances: Option<u32>,

    /// Disk limit of the web process (e.g. 256M, 1024M, 1G).
    #[arg(short = 'k', long = "disk", value_name = "DISK")]
    pub disk: Option<String>,

    /// Memory limit of the web process (e.g. 256M, 1024M, 1G).
    #[arg(short = 'm', long = "memory", value_name = "MEMORY")]
    pub memory: Option<String>,

    /// Log rate limit per second of the web process, in bytes (e.g. 128B, 4K, 1M); -1 is unlimited.
    #[arg(
        short = 'l',
        long = "log-rate-limit",
        value_name = "LOG_RATE_LIMIT",
        allow_hyphen_values = true
    )]
    pub log_rate_limit: Option<String>,

    /// Path to the app directory or to a zip/jar/war archive.
    #[arg(short = 'p', long = "path", value_name = "PATH")]
    pub path: Option<PathBuf>,

    /// Stack to use (a stack is a pre-built file system, including an operating system).
    #[arg(short = 's', long = "stack", value_name = "STACK")]
    pub stack: Option<String>,

    /// Seconds allowed between starting an instance and its first healthy response.
    #[arg(
        short = 't',
        long = "app-start-timeout",
        value_name = "HEALTH_TIMEOUT",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub app_start_timeout: Option<u32>,

    /// Refused: a task app has no routes and no running instances to switch (use 'cf push --task').
    #[arg(long = "task")]
    pub task: bool,

    /// Health check type of the web process; http needs --endpoint.
    #[arg(short = 'u', long = "health-check-type", value_enum)]
    pub health_check_type: Option<HealthCheckType>,

    /// Path on the app for the http health check (e.g. /health); with --health-check-type http.
    #[arg(long = "endpoint", value_name = "PATH")]
    pub endpoint: Option<String>,

    /// Do not map a route to this app (all its route mappings are removed).
    #[arg(long = "no-route")]
    pub no_route: bool,

    /// Create a random route for this app on its first push (except when the manifest says no-route).
    #[arg(long = "random-route")]
    pub random_route: bool,

    /// Variable substitution for the manifest, KEY=VALUE (repeatable; wins over vars files).
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,

    /// Path to a variable substitution file for the manifest (repeatable; later files win).
    #[arg(long = "vars-file", value_name = "VARS_FILE_PATH")]
    pub vars_files: Vec<PathBuf>,

    /// Docker image to use (e.g. user/docker-image-name).
    #[arg(short = 'o', long = "docker-image", value_name = "IMAGE")]
    pub docker_image: Option<String>,

    /// Repository username; the password is read from CF_DOCKER_PASSWORD.
    #[arg(long = "docker-username", value_name = "USERNAME")]
    pub docker_username: Option<String>,

    /// Refused: pushing a pre-staged droplet is not supported yet (push the app bits with -p).
    #[arg(long = "droplet", value_name = "DROPLET_PATH")]
    pub droplet: Option<PathBuf>,

    /// Accepted for cf push compatibility: environment values are never printed anyway.
    #[arg(long = "redact-env")]
    pub redact_env: bool,

    /// Deployment strategy.
    #[arg(long = "strategy", value_enum, default_value_t = Strategy::BlueGreen, help_heading = DEPLOY_HEADING)]
    pub strategy: Strategy,

    /// What to do with the old app after the switch.
    #[arg(long = "old-app", value_enum, default_value_t = OldApp::Delete, help_heading = DEPLOY_HEADING)]
    pub old_app: OldApp,

    /// The smoke test, drain, waits and output, shared with the rollback.
    #[command(flatten)]
    pub common: CommonFlags,

    /// Instances replaced at once by a rolling or canary deployment (not with blue-green; with
    /// --strategy auto, the most its fallback may use).
    #[arg(long = "max-in-flight", value_name = "N", value_parser = clap::value_parser!(u32).range(1..), help_heading = DEPLOY_HEADING)]
    pub max_in_flight: Option<u32>,

    /// Canary steps as percentages of instances, e.g. 10,50,100 (--strategy canary, or auto's
    /// fallback).
    #[arg(
        long = "instance-steps",
        value_name = "PERCENTAGES",
        value_delimiter = ',',
        help_heading = DEPLOY_HEADING
    )]
    pub instance_steps: Vec<u32>,

    /// Keep the live app's instance counts instead of the manifest's.
    #[arg(long = "keep-scale", help_heading = DEPLOY_HEADING)]
    pub keep_scale: bool,

    /// Blue-green with several apps: how many apps are staged, started and checked at a time
    /// (and retired after the switch); 1 deploys them one after the other. The switch itself
    /// stays one app after the other, and all or nothing [default: 4].
    #[arg(long = "parallel", value_name = "N", value_parser = parse_parallel, help_heading = DEPLOY_HEADING)]
    pub parallel: Option<usize>,

    /// Run COMMAND as a Cloud Foundry task of the new version (its droplet, environment and
    /// bindings) once it is healthy and smoke-tested, before any request reaches it (e.g. a
    /// database migration); a failure rolls back before the switch. Repeatable, run in order.
    /// Blue-green only.
    #[arg(long = "task-before-switch", value_name = "COMMAND", help_heading = DEPLOY_HEADING)]
    pub task_before_switch: Vec<String>,

    /// Run COMMAND as a Cloud Foundry task of the new version once the switch and the retire
    /// are done (e.g. cache warm-up, a contract migration); a failure is reported (exit 1) but
    /// not rolled back. Repeatable, run in order, after every app's switch. Blue-green only.
    #[arg(long = "task-after-switch", value_name = "COMMAND", help_heading = DEPLOY_HEADING)]
    pub task_after_switch: Vec<String>,

    /// Memory limit of each task (e.g. 512M, 1G); default: the platform's.
    #[arg(long = "task-memory", value_name = "SIZE", value_parser = parse_megabytes, help_heading = DEPLOY_HEADING)]
    pub task_memory: Option<u64>,

    /// Disk limit of each task (e.g. 1G); default: the platform's.
    #[arg(long = "task-disk", value_name = "SIZE", value_parser = parse_megabytes, help_heading = DEPLOY_HEADING)]
    pub task_disk: Option<u64>,

    /// Longest run of one task; then it is cancelled and the deploy rolls back (after the
    /// switch: it is reported, exit 1).
    #[arg(long = "task-timeout", value_name = "DURATION", value_parser = parse_duration, default_value = "10m", help_heading = DEPLOY_HEADING)]
    pub task_timeout: Duration,

    /// Blue-green: shift traffic to the new version in these steps (percent of requests,
    /// ascending; 100, the switch, is added when missing), judging it at each; implies --analysis.
    #[arg(
        long = "canary-steps",
        value_name = "PERCENTAGES",
        value_delimiter = ',',
        help_heading = ANALYSIS_HEADING
    )]
    pub canary_steps: Vec<u32>,

    /// Judge the new version by the router's request records before the switch (blue-green:
    /// at each --canary-steps step, default 10,50,100; canary: at each pause of the deployment).
    #[arg(long = "analysis", help_heading = ANALYSIS_HEADING)]
    pub analysis: bool,

    /// How long each step is observed before the verdict [default: 30s].
    #[arg(long = "analysis-interval", value_name = "DURATION", value_parser = parse_duration, help_heading = ANALYSIS_HEADING)]
    pub analysis_interval: Option<Duration>,

    /// Highest share of 5xx answers of the new version, in percent (e.g. 1, 0.5) [default: 1].
    /// Kept in parts per million.
    #[arg(long = "max-error-rate", value_name = "PERCENT", value_parser = parse_percent_ppm, help_heading = ANALYSIS_HEADING)]
    pub max_error_rate: Option<u32>,

    /// How far the new version's 5xx share may exceed the live version's, in percentage
    /// points [default: 1]. Kept in parts per million.
    #[arg(long = "error-rate-margin", value_name = "PERCENT", value_parser = parse_percent_ppm, help_heading = ANALYSIS_HEADING)]
    pub error_rate_margin: Option<u32>,

    /// Highest p99 latency of the new version (e.g. 500ms).
    #[arg(long = "max-p99", value_name = "DURATION", value_parser = parse_duration, help_heading = ANALYSIS_HEADING)]
    pub max_p99: Option<Duration>,

    /// Highest p99 latency of the new version as a multiple of the live version's (e.g. 1.5).
    /// Kept in thousandths.
    #[arg(long = "max-p99-ratio", value_name = "RATIO", value_parser = parse_ratio_milli, help_heading = ANALYSIS_HEADING)]
    pub max_p99_ratio: Option<u32>,

    /// Requests the new version must get in a step for a verdict [default: 20].
    #[arg(long = "min-requests", value_name = "N", value_parser = clap::value_parser!(u64).range(1..), help_heading = ANALYSIS_HEADING)]
    pub min_requests: Option<u64>,

    /// The verdict when fewer than --min-requests reached the new version.
    #[arg(long = "analysis-no-traffic", value_enum, default_value_t = AnalysisNoTraffic::Fail, help_heading = ANALYSIS_HEADING)]
    pub analysis_no_traffic: AnalysisNoTraffic,
}

/// `--var NAME=VALUE` pairs as `Debug` may show them: the names, each value replaced.
pub(crate) fn redacted_vars(vars: &[(String, String)]) -> Vec<(&str, &'static str)> {
    vars.iter()
        .map(|(name, _)| (name.as_str(), "<redacted>"))
        .collect()
}

impl std::fmt::Debug for PushArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Exhaustive on purpose: a new field does not compile until it is listed here.
        let PushArgs {
            app_name,
            buildpacks,
            start_command,
            manifest,
            no_manifest,
            lifecycle,
            no_start,
            no_wait,
            instances,
            disk,
            memory,
            log_rate_limit,
            path,
            stack,
            app_start_timeout,
            task,
            health_check_type,
            endpoint,
            no_route,
            random_route,
            vars,
            vars_files,
            docker_image,
            docker_username,
            droplet,
            redact_env,
            strategy,
            old_app,
            common,
            max_in_flight,
            instance_steps,
            keep_scale,
            parallel,
            task_before_switch,
            task_after_switch,
            task_memory,
            task_disk,
            task_timeout,
            canary_steps,
            analysis,
            analysis_interval,
            max_error_rate,
            error_rate_margin,
            max_p99,
            max_p99_ratio,
            min_requests,
            analysis_no_traffic,
        } = self;
        f.debug_struct("PushArgs")
            .field("app_name", app_name)
            .field("buildpacks", buildpacks)
            .field("start_command", start_command)
            .field("manifest", manifest)
            .field("no_manifest", no_manifest)
            .field("lifecycle", lifecycle)
            .field("no_start", no_start)
            .field("no_wait", no_wait)
            .field("instances", instances)
            .field("disk", disk)
            .field("memory", memory)
            .field("log_rate_limit", log_rate_limit)
            .field("path", path)
            .field("stack", stack)
            .field("app_start_timeout", app_start_timeout)
            .field("task", task)
            .field("health_check_type", health_check_type)
            .field("endpoint", endpoint)
            .field("no_route", no_route)
            .field("random_route", random_route)
            .field("vars", &redacted_vars(vars))
            .field("vars_files", vars_files)
            .field("docker_image", docker_image)
            .field("docker_username", docker_username)
            .field("droplet", droplet)
            .field("redact_env", redact_env)
            .field("strategy", strategy)
            .field("old_app", old_app)
            .field("common", common)
            .field("max_in_flight", max_in_flight)
            .field("instance_steps", instance_steps)
            .field("keep_scale", keep_scale)
            .field("parallel", parallel)
            .field("task_before_switch", task_before_switch)
            .field("task_after_switch", task_after_switch)
            .field("task_memory", task_memory)
            .field("task_disk", task_disk)
            .field("task_timeout", task_timeout)
            .field("canary_steps", canary_steps)
            .field("analysis", analysis)
            .field("analysis_interval", analysis_interval)
            .field("max_error_rate", max_error_rate)
            .field("error_rate_margin", error_rate_margin)
            .field("max_p99", max_p99)
            .field("max_p99_ratio", max_p99_ratio)
            .field("min_requests", min_requests)
            .field("analysis_no_traffic", analysis_no_traffic)
            .finish()
    }
}

impl PushArgs {
    /// Checks the `cf push` flags among themselves, as `cf push` does before reading the
    /// manifest, and refuses the flags a zero-downtime push cannot honour. Checks against the
    /// manifest's content come later, when the flags are applied to it.
    ///
    /// # Errors
    /// A message naming the flags and why (`incorrect usage: ...` for combinations).
    pub fn validate(&self) -> Result<(), String> {
        self.refusals()?;
        let together = |a: &str, b: &str| {
            Err(format!(
                "incorrect usage: the following arguments cannot be used together: {a}, {b}"
            ))
        };
        let lifecycle = self.lifecycle;
        let has_bp = !self.buildpacks.is_empty();
        let image = self.docker_image.is_some();
        let user = self.docker_username.is_some();
        match lifecycle {
            Some(Lifecycle::Buildpack) if image => {
                return together("--lifecycle buildpack", "--docker-image, -o");
            }
            Some(Lifecycle::Buildpack) if user => {
                return together("--lifecycle buildpack", "--docker-username");
            }
            Some(Lifecycle::Docker) if has_bp => {
                return together("--lifecycle docker", "--buildpack, -b");
            }
            Some(Lifecycle::Docker) if self.stack.is_some() => {
                return together("--lifecycle docker", "--stack, -s");
            }
            Some(Lifecycle::Cnb) if image => {
                return together("--lifecycle cnb", "--docker-image, -o");
            }
            Some(Lifecycle::Cnb) if user => {
                return together("--lifecycle cnb", "--docker-username");
            }
            _ => {}
        }
        if user && !image {
            return Err(
                "incorrect usage: '--docker-image, -o' and '--docker-username' must be used together"
                    .into(),
            );
        }
        if image && has_bp {
            return together("--buildpack, -b", "--docker-image, -o");
        }
        if image && self.path.is_some() {
            return together("--docker-image, -o", "--path, -p");
        }
        if image && self.stack.is_some() {
            return together("--stack, -s", "--docker-image, -o");
        }
        if self.no_manifest && self.manifest.is_some() {
            return together("--no-manifest", "--manifest, -f");
        }
        if self.no_manifest && !self.vars_files.is_empty() {
            return together("--no-manifest", "--vars-file");
        }
        if self.no_manifest && !self.vars.is_empty() {
            return together("--no-manifest", "--var");
        }
        if self.health_check_type == Some(HealthCheckType::Http) && self.endpoint.is_none() {
            return Err(
                "incorrect usage: '--endpoint' and '--health-check-type=http, -u=http' must be used together"
                    .into(),
            );
        }
        if self.keep_scale && self.instances.is_some() {
            return together("--keep-scale", "--instances, -i");
        }
        if self.no_route && self.random_route {
            return together("--no-route", "--random-route");
        }
        if self.buildpacks.len() > 1
            && self
                .buildpacks
                .iter()
                .any(|b| b == "null" || b == "default")
        {
            return Err(
                "incorrect usage: multiple buildpacks flags cannot have null/default option".into(),
            );
        }
        if let Some(e) = &self.endpoint
            && !e.starts_with('/')
        {
            return Err(format!(
                "--endpoint '{e}' must be a path starting with '/' (e.g. /health)"
            ));
        }
        if self.app_start_timeout == Some(0) {
            return Err("--app-start-timeout, -t must be at least 1 (seconds)".into());
        }
        self.validate_analysis()
    }

    /// Whether canary analysis is asked for (`--analysis`, or implied by `--canary-steps`).
    pub fn analysis_enabled(&self) -> bool {
        self.analysis || !self.canary_steps.is_empty()
    }

    /// The canary analysis flags among themselves and with the strategy.
    ///
    /// # Errors
    /// A message naming the flag and why.
    pub fn validate_analysis(&self) -> Result<(), String> {
        if !self.canary_steps.is_empty() {
            if !matches!(self.strategy, Strategy::BlueGreen | Strategy::Auto) {
                return Err("--canary-steps is for --strategy blue-green; a canary deployment steps by --instance-steps (add --analysis to judge each step)".into());
            }
            canary_steps(&self.canary_steps)?;
        }
        if self.analysis_enabled() {
            if self.strategy == Strategy::Rolling {
                return Err("--analysis needs steps to judge: use --strategy blue-green (with --canary-steps) or --strategy canary; a rolling deployment never pauses".into());
            }
            if self.analysis_interval.is_some_and(|d| d.is_zero()) {
                return Err("--analysis-interval must be longer than 0 (e.g. 30s)".into());
            }
        }
        Ok(())
    }

    /// The `cf push` flags that have no sound meaning for a zero-downtime push.
    fn refusals(&self) -> Result<(), String> {
        if self.no_start {
            return Err("--no-start is not supported: a zero-downtime push must start the new version to health-check it and switch traffic to it; to stage an app without starting it, use 'cf push --no-start'".into());
        }
        if self.task {
            return Err("--task is not supported: a task app has no routes and no running instances, so there is nothing to switch without downtime; use 'cf push --task'".into());
        }
        if self.no_wait {
            return Err("--no-wait is not supported: the deploy waits until every new instance is healthy to decide between switching and rolling back (bound the wait with --timeout)".into());
        }
        if self.droplet.is_some() {
            return Err("--droplet is not supported yet: a zero-downtime push deploys app bits (-p, or the manifest's path) or a docker image (-o); to deploy a pre-staged droplet, use 'cf push --droplet'".into());
        }
        if self.instances == Some(0) {
            return Err("--instances, -i 0 is not supported: a zero-downtime push needs at least one instance to health-check before switching; scale to zero with 'cf scale -i 0'".into());
        }
        Ok(())
    }
}

/// Parses `KEY=VALUE` as the cf CLI's `--var` does (the value may contain `=`).
///
/// # Errors
/// When there is no `=` or the key is empty.
pub fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not of the form KEY=VALUE")),
    }
}

/// The arguments cf passes to `cf zero-downtime-push` (cf replaces the alias `zdp` with the
/// command name before starting the plugin).
#[derive(Debug, Parser)]
#[command(
    name = "zero-downtime-push",
    bin_name = "cf zero-downtime-push",
    about = "Push a new version of an app without downtime (blue-green: candidate app, smoke test, route switch)",
    disable_version_flag = true
)]
pub struct PluginPush {
    /// The push flags.
    #[command(flatten)]
    pub args: PushArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cf_push_short_forms_parse_as_cf_push_does() {
        use clap::Parser;
        let parsed = super::PluginPush::try_parse_from([
            "zero-downtime-push",
            "myapp",
            "-f",
            "manifest.yml",
            "-b",
            "java_buildpack",
            "-b",
            "go_buildpack",
            "-i",
            "4",
            "-m",
            "1G",
            "-k",
            "2G",
            "-l",
            "-1",
            "-c",
            "./run",
            "-u",
            "http",
            "--endpoint",
            "/health",
            "-t",
            "120",
            "--random-route",
            "--lifecycle",
            "cnb",
            "--redact-env",
        ])
        .map(|p| p.args)
        .unwrap();
        assert_eq!(parsed.app_name.as_deref(), Some("myapp"));
        assert_eq!(parsed.buildpacks, ["java_buildpack", "go_buildpack"]);
        assert_eq!(parsed.instances, Some(4));
        assert_eq!(parsed.memory.as_deref(), Some("1G"));
        assert_eq!(parsed.disk.as_deref(), Some("2G"));
        assert_eq!(parsed.log_rate_limit.as_deref(), Some("-1"));
        assert_eq!(parsed.start_command.as_deref(), Some("./run"));
        assert_eq!(parsed.health_check_type, Some(HealthCheckType::Http));
        assert_eq!(parsed.endpoint.as_deref(), Some("/health"));
        assert_eq!(parsed.app_start_timeout, Some(120));
        assert!(parsed.random_route && parsed.redact_env);
        assert_eq!(parsed.lifecycle, Some(Lifecycle::Cnb));
        assert_eq!(parsed.validate(), Ok(()));
        let t0 = super::PluginPush::try_parse_from(["zero-downtime-push", "-t", "0"]);
        assert!(t0.is_err());
        let bad_u = super::PluginPush::try_parse_from(["zero-downtime-push", "-u", "tcp"]);
        assert!(bad_u.is_err());
    }

    #[test]
    fn parallel_defaults_to_four_and_refuses_zero() {
        use clap::Parser;
        let parse = |extra: &[&str]| {
            let mut argv = vec!["zero-downtime-push"];
            argv.extend_from_slice(extra);
            super::PluginPush::try_parse_from(argv).map(|p| p.args.parallel)
        };
        assert_eq!(
            parse(&[]).unwrap(),
            None,
            "the request takes DEFAULT_PARALLEL"
        );
        assert_eq!(parse(&["--parallel", "1"]).unwrap(), Some(1));
        assert_eq!(parse(&["--parallel", "8"]).unwrap(), Some(8));
        let zero = parse(&["--parallel", "0"]).unwrap_err().to_string();
        assert!(
            zero.contains("--parallel") && zero.contains("at least 1"),
            "{zero}"
        );
    }

    #[test]
    fn debug_hides_var_values() {
        let args = PushArgs {
            vars: vec![("db_password".into(), "hunter2".into())],
            ..PushArgs::default()
        };
        let shown = format!("{args:?}");
        assert!(shown.contains("db_password"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("temp_route_suffix"), "{shown}");
    }

    #[test]
    fn vars_split_on_first_equals() {
        assert_eq!(parse_var("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_var("=x").is_err());
        assert!(parse_var("nokey").is_err());
    }
}
