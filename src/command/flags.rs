//! The flags and flag parsers the commands share: the smoke-test, drain, wait and output
//! group [`CommonFlags`] that `zero-downtime-push` and `zero-downtime-rollback` both flatten, the
//! value parsers (durations, sizes, percentages), and how the core's enums are spelled on the
//! command line (their [`ValueEnum`] implementations live here, so the core needs no clap).

use std::time::Duration;

use clap::builder::PossibleValue;
use clap::{Args, ValueEnum};

use crate::deploy::analysis::AnalysisNoTraffic;
use crate::deploy::{OldApp, Strategy};
use crate::ui::OutputFormat;

/// Help heading of the flags that `cf push` does not have.
pub(crate) const DEPLOY_HEADING: &str = "Zero-downtime options";

/// Help heading of the canary analysis flags.
pub(crate) const ANALYSIS_HEADING: &str = "Canary analysis";

/// The flags every command that replaces a serving version shares, with one meaning: how the
/// version about to serve is smoke-tested on its temporary route, how long the waits may take,
/// and how the run is shown.
#[derive(Debug, Clone, Args)]
pub struct CommonFlags {
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
    /// which stays the Host header and TLS server name (like curl's --connect-to). A
    /// --smoke-test command gets it as $CF_ZDT_CONNECT_TO, ready for
    /// `curl --connect-to "$CF_ZDT_CONNECT_TO" "$CF_ZDT_URL"`.
    #[arg(long = "smoke-test-router", value_name = "HOST:PORT", help_heading = DEPLOY_HEADING)]
    pub smoke_test_router: Option<String>,

    /// Scheme of the smoke test's requests to the temporary route.
    #[arg(long = "smoke-test-scheme", value_enum, default_value_t = SmokeScheme::Https, help_heading = DEPLOY_HEADING)]
    pub smoke_test_scheme: SmokeScheme,

    /// Time both versions serve before the old one stops (router propagation + in-flight
    /// requests): 'auto' ends it once the routers dropped the old version and no request
    /// reaches it (at least 2s, at most 10s; 'auto:30s' sets the maximum), a duration waits
    /// that long.
    #[arg(long = "drain", value_name = "auto[:MAX]|DURATION", value_parser = parse_drain, default_value = "auto", help_heading = DEPLOY_HEADING)]
    pub drain: DrainArg,

    /// Longest wait for staging or for instances to become healthy without progress.
    #[arg(long = "timeout", value_name = "DURATION", value_parser = parse_duration, default_value = "5m", help_heading = DEPLOY_HEADING)]
    pub timeout: Duration,

    /// Longest wait for Cloud Controller or UAA to answer again during an outage (502/503/504,
    /// refused or reset connections) or rate limiting (429), per request [default: 60s].
    #[arg(long = "api-outage-budget", value_name = "DURATION", value_parser = parse_duration, help_heading = DEPLOY_HEADING)]
    pub api_outage_budget: Option<Duration>,

    /// Host suffix of the temporary route the version about to serve is smoke-tested on.
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

    /// When another deploy of the app is running, wait up to this long for it to end instead
    /// of refusing at once (e.g. 10m).
    #[arg(long = "wait-for-lock", value_name = "DURATION", value_parser = parse_duration, default_value = "0s", help_heading = DEPLOY_HEADING)]
    pub wait_for_lock: Duration,

    /// Output format.
    #[arg(long = "output", value_enum, default_value_t = OutputFormat::Text, help_heading = DEPLOY_HEADING)]
    pub output: OutputFormat,
}

impl Default for CommonFlags {
    /// The flags' defaults, as parsing an empty command line gives them.
    fn default() -> Self {
        CommonFlags {
            smoke_test: None,
            smoke_test_path: None,
            smoke_test_timeout: Duration::from_secs(60),
            smoke_test_router: None,
            smoke_test_scheme: SmokeScheme::Https,
            drain: DrainArg::auto(DrainArg::AUTO_MAX),
            timeout: Duration::from_secs(300),
            api_outage_budget: None,
            temp_route_suffix: "-temp".into(),
            dry_run: false,
            wait_for_lock: Duration::ZERO,
            output: OutputFormat::Text,
        }
    }
}

impl CommonFlags {
    /// Whether a smoke test (command or path) is asked for.
    pub fn has_smoke_test(&self) -> bool {
        self.smoke_test.is_some() || self.smoke_test_path.is_some()
    }
}

/// A flag value as the command line (and the manifest) spells it: `blue-green`, `cnb`,
/// `https`.
pub(crate) fn spelled<E: ValueEnum>(value: &E) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

/// A value of a core enum as the command line spells it, with its `--help` line.
fn value(name: &'static str, help: &'static str) -> Option<PossibleValue> {
    Some(PossibleValue::new(name).help(help))
}

impl ValueEnum for Strategy {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            Strategy::BlueGreen,
            Strategy::Rolling,
            Strategy::Canary,
            Strategy::Auto,
        ]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        match self {
            Strategy::BlueGreen => value(
                "blue-green",
                "Temporary candidate app, smoke test, route switch, retire the old app",
            ),
            Strategy::Rolling => value(
                "rolling",
                "Cloud Controller rolling deployment: keeps the app GUID; a crash or stall cancels it",
            ),
            Strategy::Canary => value(
                "canary",
                "Cloud Controller canary deployment: smoke test on the canary, then continue or cancel",
            ),
            Strategy::Auto => value(
                "auto",
                "Blue-green when the space and org quotas leave room for the candidate next to the live app; else in place with the largest --max-in-flight that fits: canary when --instance-steps, canary analysis or a smoke test asks for pauses, else rolling",
            ),
        }
    }
}

impl ValueEnum for OldApp {
    fn value_variants<'a>() -> &'a [Self] {
        &[OldApp::Delete, OldApp::Stop, OldApp::Keep]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        match self {
            OldApp::Delete => value("delete", "Delete it"),
            OldApp::Stop => value("stop", "Stop it and keep it as `<app>-venerable`"),
            OldApp::Keep => value("keep", "Keep it running (unrouted) as `<app>-venerable`"),
        }
    }
}

impl ValueEnum for OutputFormat {
    fn value_variants<'a>() -> &'a [Self] {
        &[OutputFormat::Text, OutputFormat::Json]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        match self {
            OutputFormat::Text => value("text", "cf-CLI-like text"),
            OutputFormat::Json => value("json", "One JSON event per line"),
        }
    }
}

impl ValueEnum for AnalysisNoTraffic {
    fn value_variants<'a>() -> &'a [Self] {
        &[AnalysisNoTraffic::Fail, AnalysisNoTraffic::Pass]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        match self {
            AnalysisNoTraffic::Fail => {
                value("fail", "Roll back: nothing proves the new version works")
            }
            AnalysisNoTraffic::Pass => value("pass", "Go on to the next step (low-traffic apps)"),
        }
    }
}

/// The scheme of the smoke test's requests to the temporary route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum SmokeScheme {
    /// Through the router's TLS port, the route as SNI (the default).
    #[default]
    Https,
    /// Plain HTTP (a local router, the simulator).
    Http,
}

/// Parses a size as the manifest and `cf run-task -m` write it (`512M`, `1G`) into whole
/// megabytes, at least 1.
///
/// # Errors
/// When it is not a size, or rounds down to 0 MB.
pub(crate) fn parse_megabytes(s: &str) -> Result<u64, String> {
    crate::manifest::size_in_mb(s)
        .filter(|mb| *mb > 0)
        .ok_or_else(|| format!("'{s}' is not a size of at least 1M (e.g. 512M, 1G)"))
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

/// `--drain`: a fixed duration, or `auto` with its maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DrainArg {
    /// End the drain once the old version is quiet (`auto`).
    pub auto: bool,
    /// The fixed drain, or the maximum of `auto`.
    pub max: Duration,
}

impl DrainArg {
    /// The maximum of `--drain auto` without `:MAX`: the fixed drain of earlier versions.
    pub const AUTO_MAX: Duration = Duration::from_secs(10);

    /// A fixed drain of `d`.
    pub fn fixed(d: Duration) -> Self {
        DrainArg {
            auto: false,
            max: d,
        }
    }

    /// An auto drain of at most `max`.
    pub fn auto(max: Duration) -> Self {
        DrainArg { auto: true, max }
    }
}

/// Parses `--drain`: `auto`, `auto:MAX` (MAX a duration) or a duration.
///
/// # Errors
/// A message naming the value and the accepted forms.
pub fn parse_drain(s: &str) -> Result<DrainArg, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    if lower == "auto" {
        return Ok(DrainArg::auto(DrainArg::AUTO_MAX));
    }
    if let Some(max) = lower.strip_prefix("auto:") {
        return parse_duration(max)
            .map(DrainArg::auto)
            .map_err(|e| format!("--drain '{t}': the maximum after 'auto:': {e}"));
    }
    parse_duration(t)
        .map(DrainArg::fixed)
        .map_err(|e| format!("{e}; or 'auto', 'auto:MAX'"))
}

/// Parses `--parallel`: how many apps at a time, at least 1.
///
/// # Errors
/// Not a whole number, or 0.
pub(crate) fn parse_parallel(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err(
            "0 apps at a time would deploy nothing: give at least 1 (1 deploys the apps one after the other)"
                .into(),
        ),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "'{s}' is not a number of apps (examples: 1, 4)"
        )),
    }
}

/// Parses a percentage (`1`, `0.5`, `2%`) into parts per million.
///
/// # Errors
/// Not a number, negative, or above 100.
pub fn parse_percent_ppm(s: &str) -> Result<u32, String> {
    let t = s.trim().trim_end_matches('%');
    let v: f64 = t
        .parse()
        .map_err(|_| format!("'{s}' is not a percentage (examples: 1, 0.5, 2%)"))?;
    if !v.is_finite() || !(0.0..=100.0).contains(&v) {
        return Err(format!("'{s}' is not a percentage between 0 and 100"));
    }
    // In range, so the product fits.
    Ok((v * 10_000.0).round() as u32)
}

/// Parses a ratio (`1.5`) into thousandths.
///
/// # Errors
/// Not a number, or below 1 or above 1000.
pub fn parse_ratio_milli(s: &str) -> Result<u32, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a ratio (example: 1.5)"))?;
    if !v.is_finite() || !(1.0..=1000.0).contains(&v) {
        return Err(format!("'{s}' is not a ratio between 1 and 1000"));
    }
    Ok((v * 1000.0).round() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_is_auto_or_a_duration() {
        assert_eq!(
            parse_drain("auto"),
            Ok(DrainArg::auto(Duration::from_secs(10)))
        );
        assert_eq!(
            parse_drain("AUTO:30s"),
            Ok(DrainArg::auto(Duration::from_secs(30)))
        );
        assert_eq!(
            parse_drain("5s"),
            Ok(DrainArg::fixed(Duration::from_secs(5)))
        );
        assert_eq!(parse_drain("0"), Ok(DrainArg::fixed(Duration::ZERO)));
        let e = parse_drain("auto:soon").unwrap_err();
        assert!(e.starts_with("--drain 'auto:soon': the maximum"), "{e}");
        let e = parse_drain("later").unwrap_err();
        assert!(e.contains("'auto'"), "{e}");
    }

    #[test]
    fn parallel_is_at_least_one_app() {
        assert_eq!(parse_parallel("1"), Ok(1));
        assert_eq!(parse_parallel(" 8 "), Ok(8));
        let e = parse_parallel("0").unwrap_err();
        assert!(e.contains("at least 1"), "{e}");
        for bad in ["", "x", "-1", "2.5"] {
            assert!(parse_parallel(bad).is_err(), "{bad}");
        }
    }

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
    fn percentages_and_ratios_parse_and_are_checked() {
        assert_eq!(parse_percent_ppm("1"), Ok(10_000));
        assert_eq!(parse_percent_ppm("0.5%"), Ok(5_000));
        assert_eq!(parse_percent_ppm("100"), Ok(1_000_000));
        for bad in ["", "x", "-1", "101", "NaN", "inf"] {
            assert!(parse_percent_ppm(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_ratio_milli("1.5"), Ok(1500));
        for bad in ["0.5", "x", "inf"] {
            assert!(parse_ratio_milli(bad).is_err(), "{bad}");
        }
    }
}
