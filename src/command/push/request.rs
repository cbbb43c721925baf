//! The push flags and the target, checked and turned into the core's [`DeployRequest`]: the
//! one place a command line becomes plain data for the deploy engine.

use std::net::SocketAddr;
use std::time::Duration;

use super::PushArgs;
use crate::cf::Target;
use crate::command::flags::spelled;
use crate::deploy::Strategy;
use crate::deploy::analysis::{AnalysisConfig, canary_steps};
use crate::deploy::api::{DeploymentStrategy, SpaceGuid};
use crate::deploy::request::{
    AutoFallback, DEFAULT_PARALLEL, DeployRequest, ProbeConfig, TaskRequest,
};

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
    /// `--task-after-switch` with a strategy that has no one switch of every app to run after.
    #[error(
        "--task-after-switch needs --strategy blue-green: with --strategy {0} Cloud Controller replaces the instances in place, app by app, so there is no one point where every app's switch is done to run the task after"
    )]
    AfterTasksNeedBlueGreen(String),
    /// A `--task-before-switch` or `--task-after-switch` command is empty.
    #[error("{0}: the command is empty")]
    EmptyTask(&'static str),
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
    let smoke = args.common.smoke_test.is_some() || args.common.smoke_test_path.is_some();
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

/// Builds the deploy request from the push flags and the target.
///
/// # Errors
/// No targeted space, an invalid temp-route suffix or smoke-test path.
pub(crate) fn deploy_request(
    args: &PushArgs,
    target: &Target,
) -> Result<DeployRequest, RequestError> {
    let space = target.space.as_ref().ok_or(RequestError::NoSpace)?;
    let suffix = &args.common.temp_route_suffix;
    if suffix.is_empty()
        || !suffix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(RequestError::BadSuffix(suffix.clone()));
    }
    if let Some(p) = &args.common.smoke_test_path
        && !p.starts_with('/')
    {
        return Err(RequestError::BadSmokePath(p.clone()));
    }
    check_tasks(args)?;
    let analysis = analysis_config(args)?;
    let fallback =
        (args.strategy == Strategy::Auto).then(|| auto_fallback(args, analysis.as_ref()));
    Ok(DeployRequest {
        org: target
            .org
            .as_ref()
            .map(|o| o.name.clone())
            .unwrap_or_default(),
        space: space.name.clone(),
        space_guid: SpaceGuid::new(space.guid.as_str()),
        user: target.user.clone(),
        strategy: args.strategy,
        max_in_flight: args.max_in_flight,
        instance_steps: args.instance_steps.clone(),
        smoke_test: args.common.smoke_test.clone(),
        smoke_test_path: args.common.smoke_test_path.clone(),
        old_app: args.old_app,
        drain: args.common.drain.max,
        drain_auto: args.common.drain.auto,
        timeout: args.common.timeout,
        smoke_timeout: args.common.smoke_test_timeout,
        poll_interval: Duration::from_secs(1),
        keep_scale: args.keep_scale,
        temp_route_suffix: suffix.clone(),
        dry_run: args.common.dry_run,
        probe: ProbeConfig {
            scheme: spelled(&args.common.smoke_test_scheme),
            connect_to: args
                .common
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
        wait_for_lock: args.common.wait_for_lock,
        tasks: TaskRequest {
            before_switch: args.task_before_switch.clone(),
            after_switch: args.task_after_switch.clone(),
            memory_mb: args.task_memory,
            disk_mb: args.task_disk,
            timeout: args.task_timeout,
        },
        parallel: args.parallel.unwrap_or(DEFAULT_PARALLEL),
    })
}

/// The task commands are not empty and the strategy is blue-green when there are any.
fn check_tasks(args: &PushArgs) -> Result<(), RequestError> {
    let lists = [
        ("--task-before-switch", &args.task_before_switch),
        ("--task-after-switch", &args.task_after_switch),
    ];
    for (flag, commands) in lists {
        if commands.iter().any(|c| c.trim().is_empty()) {
            return Err(RequestError::EmptyTask(flag));
        }
    }
    if args.strategy == Strategy::BlueGreen {
        return Ok(());
    }
    let name = clap::ValueEnum::to_possible_value(&args.strategy)
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();
    if !args.task_before_switch.is_empty() {
        return Err(RequestError::TasksNeedBlueGreen(name));
    }
    if !args.task_after_switch.is_empty() {
        return Err(RequestError::AfterTasksNeedBlueGreen(name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cf::NamedGuid;
    use crate::command::flags::{CommonFlags, DrainArg, SmokeScheme};

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
    fn parallel_is_carried_with_its_default() {
        let r = deploy_request(&PushArgs::default(), &target()).unwrap();
        assert_eq!(r.parallel, DEFAULT_PARALLEL);
        let args = PushArgs {
            parallel: Some(1),
            ..PushArgs::default()
        };
        assert_eq!(deploy_request(&args, &target()).unwrap().parallel, 1);
    }

    #[test]
    fn release_tasks_are_blue_green_only_and_carry_their_limits() {
        let args = PushArgs {
            task_before_switch: vec!["bin/rails db:migrate".into()],
            task_memory: Some(512),
            task_timeout: Duration::from_secs(90),
            ..PushArgs::default()
        };
        let r = deploy_request(&args, &target()).unwrap();
        assert_eq!(r.tasks.before_switch, ["bin/rails db:migrate"]);
        assert_eq!(
            (r.tasks.memory_mb, r.tasks.disk_mb, r.tasks.timeout),
            (Some(512), None, Duration::from_secs(90))
        );
        for (strategy, name) in [
            (Strategy::Rolling, "rolling"),
            (Strategy::Canary, "canary"),
            (Strategy::Auto, "auto"),
        ] {
            let e = deploy_request(
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
        let e = deploy_request(
            &PushArgs {
                task_before_switch: vec!["  ".into()],
                ..args.clone()
            },
            &target(),
        )
        .unwrap_err();
        assert_eq!(e, RequestError::EmptyTask("--task-before-switch"));
    }

    #[test]
    fn after_switch_tasks_are_blue_green_only_and_kept_in_order() {
        let args = PushArgs {
            task_after_switch: vec!["warm-cache".into(), "notify".into()],
            ..PushArgs::default()
        };
        let r = deploy_request(&args, &target()).unwrap();
        assert_eq!(r.tasks.after_switch, ["warm-cache", "notify"]);
        assert!(r.tasks.before_switch.is_empty());
        for (strategy, name) in [
            (Strategy::Rolling, "rolling"),
            (Strategy::Canary, "canary"),
            (Strategy::Auto, "auto"),
        ] {
            let e = deploy_request(
                &PushArgs {
                    strategy,
                    ..args.clone()
                },
                &target(),
            )
            .unwrap_err();
            assert_eq!(e, RequestError::AfterTasksNeedBlueGreen(name.into()));
            assert!(
                e.to_string().starts_with(&format!(
                    "--task-after-switch needs --strategy blue-green: with --strategy {name} Cloud Controller replaces the instances in place"
                )),
                "{e}"
            );
        }
        let e = deploy_request(
            &PushArgs {
                task_after_switch: vec![String::new()],
                ..args.clone()
            },
            &target(),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "--task-after-switch: the command is empty");
    }

    #[test]
    fn smoke_test_router_and_scheme_reach_the_probe() {
        let args = PushArgs {
            common: CommonFlags {
                smoke_test_router: Some("127.0.0.1:8081".into()),
                smoke_test_scheme: SmokeScheme::Http,
                ..CommonFlags::default()
            },
            ..PushArgs::default()
        };
        let r = deploy_request(&args, &target()).unwrap();
        assert_eq!(r.probe.scheme, "http");
        assert_eq!(
            r.probe.connect_to,
            Some(SocketAddr::from(([127, 0, 0, 1], 8081)))
        );
        let r = deploy_request(
            &PushArgs {
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
            let e = deploy_request(
                &PushArgs {
                    common: CommonFlags {
                        smoke_test_router: Some(bad.into()),
                        ..CommonFlags::default()
                    },
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
            max_in_flight: Some(3),
            instance_steps: vec![10, 50],
            common: CommonFlags {
                drain: DrainArg::fixed(Duration::from_secs(3)),
                smoke_test_path: Some("/health".into()),
                ..CommonFlags::default()
            },
            ..PushArgs::default()
        };
        let r = deploy_request(&args, &target()).unwrap();
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
            ..PushArgs::default()
        };
        assert_eq!(deploy_request(&base, &target()).unwrap().analysis, None);
        let args = PushArgs {
            canary_steps: vec![25],
            analysis_interval: Some(Duration::from_secs(1)),
            max_p99: Some(Duration::from_millis(300)),
            ..base.clone()
        };
        let a = deploy_request(&args, &target()).unwrap().analysis.unwrap();
        assert_eq!(a.steps, vec![25, 100]);
        assert_eq!(a.interval, Duration::from_secs(1));
        assert_eq!(a.max_error_ppm, 10_000);
        assert_eq!(a.min_requests, 20);
        assert_eq!(a.max_p99, Some(Duration::from_millis(300)));
        let args = PushArgs {
            analysis: true,
            ..base.clone()
        };
        let a = deploy_request(&args, &target()).unwrap().analysis.unwrap();
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
                    strategy: Strategy::Canary,
                    ..base.clone()
                },
                "--instance-steps",
            ),
            (
                PushArgs {
                    analysis: true,
                    strategy: Strategy::Rolling,
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
            let e = deploy_request(&bad, &target()).unwrap_err();
            assert!(e.to_string().contains(says), "{e}");
            assert!(bad.validate().is_err());
        }
    }

    #[test]
    fn request_rejects_bad_inputs() {
        let mut args = PushArgs {
            ..PushArgs::default()
        };
        let mut t = target();
        t.space = None;
        assert_eq!(deploy_request(&args, &t), Err(RequestError::NoSpace));
        args.common.temp_route_suffix = ".x".into();
        assert!(matches!(
            deploy_request(&args, &target()),
            Err(RequestError::BadSuffix(_))
        ));
        args.common.temp_route_suffix = "-t".into();
        args.common.smoke_test_path = Some("health".into());
        assert!(matches!(
            deploy_request(&args, &target()),
            Err(RequestError::BadSmokePath(_))
        ));
    }
}
