//! The flags of `zero-downtime-push` (plugin) and `cf-zero-downtime push` (standalone).
//!
//! The same [`PushArgs`] serves both; the plugin metadata's usage and options are derived
//! from it so `cf help zero-downtime-push` always matches what is parsed.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// How the new version replaces the live one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Strategy {
    /// Temporary candidate app, smoke test, route switch, retire the old app.
    #[default]
    BlueGreen,
    /// Cloud Controller rolling deployment: keeps the app GUID; a crash or stall cancels it.
    Rolling,
    /// Cloud Controller canary deployment: smoke test on the canary, then continue or cancel.
    Canary,
}

/// What happens to the old app after a blue-green switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OldApp {
    /// Delete it.
    #[default]
    Delete,
    /// Stop it and keep it as `<app>-venerable`.
    Stop,
    /// Keep it running (unrouted) as `<app>-venerable`.
    Keep,
}

/// How progress is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    /// cf-CLI-like text.
    #[default]
    Text,
    /// One JSON event per line.
    Json,
}

/// Arguments of a zero-downtime push.
#[derive(Debug, Clone, Args, Default)]
pub struct PushArgs {
    /// App to push (default: every app in the manifest).
    #[arg(value_name = "APP_NAME")]
    pub app_name: Option<String>,

    /// Path to the manifest.
    #[arg(short = 'f', long = "manifest", value_name = "MANIFEST_PATH")]
    pub manifest: Option<PathBuf>,

    /// Path to the app directory or to a zip/jar/war archive.
    #[arg(short = 'p', long = "path", value_name = "PATH")]
    pub path: Option<PathBuf>,

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

    /// Stack to use (a stack is a pre-built file system, including an operating system).
    #[arg(short = 's', long = "stack", value_name = "STACK")]
    pub stack: Option<String>,

    /// Deployment strategy.
    #[arg(long = "strategy", value_enum, default_value_t = Strategy::BlueGreen)]
    pub strategy: Strategy,

    /// Command to smoke-test the candidate; gets its URL as argument and in $CF_ZDT_URL.
    #[arg(long = "smoke-test", value_name = "COMMAND")]
    pub smoke_test: Option<String>,

    /// Built-in smoke test: GET this path on the candidate and expect a 2xx answer.
    #[arg(long = "smoke-test-path", value_name = "PATH")]
    pub smoke_test_path: Option<String>,

    /// What to do with the old app after the switch.
    #[arg(long = "old-app", value_enum, default_value_t = OldApp::Delete)]
    pub old_app: OldApp,

    /// Time both versions serve before the old one stops (router propagation + in-flight requests).
    #[arg(long = "drain", value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub drain: Duration,

    /// Longest wait for staging or for instances to become healthy without progress.
    #[arg(long = "timeout", value_name = "DURATION", value_parser = parse_duration, default_value = "5m")]
    pub timeout: Duration,

    /// Instances replaced at once by a rolling or canary deployment (not with blue-green).
    #[arg(long = "max-in-flight", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: Option<u32>,

    /// Canary steps as percentages of instances, e.g. 10,50,100 (--strategy canary).
    #[arg(
        long = "instance-steps",
        value_name = "PERCENTAGES",
        value_delimiter = ','
    )]
    pub instance_steps: Vec<u32>,

    /// Keep the live app's instance counts instead of the manifest's.
    #[arg(long = "keep-scale")]
    pub keep_scale: bool,

    /// Host suffix of the temporary route that the candidate is smoke-tested on.
    #[arg(
        long = "temp-route-suffix",
        value_name = "SUFFIX",
        default_value = "-temp"
    )]
    pub temp_route_suffix: String,

    /// Print the plan and change nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,

    /// Output format.
    #[arg(long = "output", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
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

/// Parses a duration: `500ms`, `30s`, `5m`, `1h`, or a bare number of seconds.
///
/// # Errors
/// When the number or the unit is not understood.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (examples: 30s, 5m, 500ms)"))?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => {
            return Err(format!(
                "'{s}' has an unknown unit '{unit}' (use ms, s, m or h)"
            ));
        }
    };
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn vars_split_on_first_equals() {
        assert_eq!(parse_var("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_var("=x").is_err());
        assert!(parse_var("nokey").is_err());
    }
}
