//! The flags of `zero-downtime-rollback` (plugin, alias `zdr`) and `cf-zero-downtime rollback`
//! (standalone). The plugin metadata's usage and options are derived from [`PluginRollback`]
//! as for the push.
//!
//! The flags a rollback shares with the push keep the push's names, meanings and defaults;
//! the smoke-test group is [`SmokeTestArgs`], ready to be flattened into the push flags too.

use std::time::Duration;

use clap::{Args, Parser};

use super::args::{
    DEPLOY_HEADING, DrainArg, OldApp, OutputFormat, PushArgs, SmokeScheme, parse_drain,
    parse_duration,
};

/// The smoke test of the version about to serve, on its temporary route.
#[derive(Debug, Clone, Args, Default)]
pub struct SmokeTestArgs {
    /// Command to smoke-test the version about to serve; gets its URL as argument and in $CF_ZDT_URL.
    #[arg(long = "smoke-test", value_name = "COMMAND", help_heading = DEPLOY_HEADING)]
    pub smoke_test: Option<String>,

    /// Built-in smoke test: GET this path on the version about to serve and expect a 2xx answer.
    #[arg(long = "smoke-test-path", value_name = "PATH", help_heading = DEPLOY_HEADING)]
    pub smoke_test_path: Option<String>,

    /// Longest run of a `--smoke-test` command; then it and everything it started are killed
    /// and the change is rolled back.
    #[arg(long = "smoke-test-timeout", value_name = "DURATION", value_parser = parse_duration, default_value = "1m", help_heading = DEPLOY_HEADING)]
    pub smoke_test_timeout: Duration,

    /// Dial this router (HOST:PORT) for the smoke test instead of resolving the temporary route,
    /// which stays the Host header and TLS server name (like curl's --connect-to).
    #[arg(long = "smoke-test-router", value_name = "HOST:PORT", help_heading = DEPLOY_HEADING)]
    pub smoke_test_router: Option<String>,

    /// Scheme of the smoke test's requests to the temporary route.
    #[arg(long = "smoke-test-scheme", value_enum, default_value_t = SmokeScheme::Https, help_heading = DEPLOY_HEADING)]
    pub smoke_test_scheme: SmokeScheme,
}

/// Arguments of a zero-downtime rollback: `<app>-venerable` (kept by a deploy with
/// `--old-app stop|keep`) serves again under the app's name.
#[derive(Debug, Clone, Args)]
pub struct RollbackArgs {
    /// App to roll back to its kept previous version (APP_NAME-venerable).
    #[arg(value_name = "APP_NAME", required = true)]
    pub app_name: String,

    /// The smoke test.
    #[command(flatten)]
    pub smoke: SmokeTestArgs,

    /// What to do with the current version after the switch (stop keeps it as the
    /// venerable, so a second rollback brings it back).
    #[arg(long = "current-app", value_enum, default_value_t = OldApp::Stop, help_heading = DEPLOY_HEADING)]
    pub current_app: OldApp,

    /// Time both versions serve before the current one stops: 'auto' ends it once the
    /// routers dropped the current version and no request reaches it (at least 2s, at most
    /// 10s; 'auto:30s' sets the maximum), a duration waits that long.
    #[arg(long = "drain", value_name = "auto[:MAX]|DURATION", value_parser = parse_drain, default_value = "auto", help_heading = DEPLOY_HEADING)]
    pub drain: DrainArg,

    /// Longest wait for instances to become healthy without progress.
    #[arg(long = "timeout", value_name = "DURATION", value_parser = parse_duration, default_value = "5m", help_heading = DEPLOY_HEADING)]
    pub timeout: Duration,

    /// Longest wait for Cloud Controller or UAA to answer again during an outage (502/503/504,
    /// refused or reset connections) or rate limiting (429), per request [default: 60s].
    #[arg(long = "api-outage-budget", value_name = "DURATION", value_parser = parse_duration, help_heading = DEPLOY_HEADING)]
    pub api_outage_budget: Option<Duration>,

    /// Host suffix of the temporary route the smoke test runs on.
    #[arg(
        long = "temp-route-suffix",
        value_name = "SUFFIX",
        default_value = "-temp",
        help_heading = DEPLOY_HEADING
    )]
    pub temp_route_suffix: String,

    /// Print the plan and change nothing.
    #[arg(long = "dry-run", help_heading = DEPLOY_HEADING)]
    pub dry_run: bool,

    /// When a deploy of the app is running, wait up to this long for it to end instead of
    /// refusing at once (e.g. 10m).
    #[arg(long = "wait-for-lock", value_name = "DURATION", value_parser = parse_duration, default_value = "0s", help_heading = DEPLOY_HEADING)]
    pub wait_for_lock: Duration,

    /// Output format.
    #[arg(long = "output", value_enum, default_value_t = OutputFormat::Text, help_heading = DEPLOY_HEADING)]
    pub output: OutputFormat,
}

impl RollbackArgs {
    /// Arguments for `app` with the flags' defaults.
    pub fn new(app: impl Into<String>) -> Self {
        RollbackArgs {
            app_name: app.into(),
            smoke: SmokeTestArgs {
                smoke_test_timeout: Duration::from_secs(60),
                ..SmokeTestArgs::default()
            },
            current_app: OldApp::Stop,
            drain: DrainArg::auto(DrainArg::AUTO_MAX),
            timeout: Duration::from_secs(300),
            api_outage_budget: None,
            temp_route_suffix: "-temp".into(),
            dry_run: false,
            wait_for_lock: Duration::ZERO,
            output: OutputFormat::Text,
        }
    }

    /// The same settings as push flags, so that the deploy request is built and checked in
    /// one place (`DeployRequest::from_args`); `--current-app` becomes `--old-app`.
    pub fn to_push_args(&self) -> PushArgs {
        PushArgs {
            app_name: Some(self.app_name.clone()),
            smoke_test: self.smoke.smoke_test.clone(),
            smoke_test_path: self.smoke.smoke_test_path.clone(),
            smoke_test_timeout: self.smoke.smoke_test_timeout,
            smoke_test_router: self.smoke.smoke_test_router.clone(),
            smoke_test_scheme: self.smoke.smoke_test_scheme,
            old_app: self.current_app,
            drain: self.drain,
            timeout: self.timeout,
            api_outage_budget: self.api_outage_budget,
            temp_route_suffix: self.temp_route_suffix.clone(),
            dry_run: self.dry_run,
            wait_for_lock: self.wait_for_lock,
            output: self.output,
            ..PushArgs::default()
        }
    }
}

/// The arguments cf passes to `cf zero-downtime-rollback` (cf replaces the alias `zdr` with
/// the command name before starting the plugin).
#[derive(Debug, Parser)]
#[command(
    name = "zero-downtime-rollback",
    bin_name = "cf zero-downtime-rollback",
    about = "Put the previous version of an app back without downtime (the APP_NAME-venerable kept by --old-app stop|keep)",
    disable_version_flag = true
)]
pub struct PluginRollback {
    /// The rollback flags.
    #[command(flatten)]
    pub args: RollbackArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_constructor_and_map_to_push_flags() {
        let parsed = PluginRollback::try_parse_from(["zero-downtime-rollback", "web"])
            .map(|p| p.args)
            .unwrap();
        let new = RollbackArgs::new("web");
        assert_eq!(format!("{parsed:?}"), format!("{new:?}"));
        let p = PluginRollback::try_parse_from([
            "zero-downtime-rollback",
            "web",
            "--smoke-test-path",
            "/health",
            "--current-app",
            "delete",
            "--drain",
            "2s",
            "--dry-run",
            "--output",
            "json",
        ])
        .map(|p| p.args)
        .unwrap();
        let push = p.to_push_args();
        assert_eq!(push.smoke_test_path.as_deref(), Some("/health"));
        assert_eq!(push.old_app, OldApp::Delete);
        assert_eq!(push.drain, DrainArg::fixed(Duration::from_secs(2)));
        assert!(push.dry_run);
        assert_eq!(push.output, OutputFormat::Json);
        assert!(PluginRollback::try_parse_from(["zero-downtime-rollback"]).is_err());
    }
}
