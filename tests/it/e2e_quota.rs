//! End-to-end: space quotas on the simulator, under steady load through its router.
//!
//! - A space memory quota that fits the live app but not the live app plus a blue-green
//!   candidate: refused in the preflight with the numbers, no call that changes anything.
//! - The same with `--strategy auto`: deployed in place by a rolling deployment with the
//!   largest `--max-in-flight` that fits.
//! - The quota used up by someone else while the candidate stages: Cloud Controller refuses
//!   its start; rolled back, with Cloud Controller's message.
//! - The quota lowered below what runs while a rolling deployment rolls: the deployment
//!   stalls with Cloud Controller's `status.details.error`, which the cancel after `--timeout`
//!   shows.
//!
//! Every one ends with the old version serving or the new one deployed and no failed request.

use std::time::{Duration, Instant};

use cf_zero_downtime::cf::{AppGuid, ProcessScale, SpaceGuid};
use cf_zero_downtime::command::flags::CommonFlags;
use cf_zero_downtime::command::push::PushArgs;
use cf_zero_downtime::deploy::Strategy;
use cf_zero_downtime::deploy::{Event, Outcome};
use cf_zero_downtime::sim::{QuotaScope, QuotaSpec, SimConfig};

use crate::support::sim_world::{AppVersion, World, assert_no_failures, fast, push_args, world};

fn small(total_memory_mb: u64) -> QuotaSpec {
    QuotaSpec {
        total_memory_mb: Some(total_memory_mb),
        ..QuotaSpec::unlimited("small")
    }
}

/// A simulator whose space has the quota `small` of `mb` MB, with `web` v1 (4 × 64 MB) deployed.
async fn web_under_quota(cfg: SimConfig, mb: u64) -> World {
    let w = world(SimConfig {
        space_quota: Some(small(mb)),
        ..cfg
    })
    .await;
    let m = w.web_version("v1", 4);
    w.push_deployed(push_args(&m)).await;
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_that_does_not_fit_the_space_quota_is_refused_before_any_change() {
    // 400 MB: the live app (256) fits, live + candidate (512) does not.
    let w = web_under_quota(fast(), 400).await;
    let load = w.load("web").await;
    let m = w.web_version("v2", 4);
    w.sim.clear_call_log();
    let started = Instant::now();
    let (outcome, events) = w.push(push_args(&m)).await;
    let took = started.elapsed();
    let Outcome::NothingChanged { error } = &outcome else {
        panic!("{outcome:?} {events:#?}");
    };
    eprintln!("refused after {took:?}:\n{error}");
    assert!(
        error.to_string().contains(
            "space quota 'small' (space 'space'): memory: blue-green needs 256 MB more, 144 MB are left: 512 MB of 400 MB (in use 256 MB, of which live app web 256 MB; candidate of web 4 × 64 MB)"
        ),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("--strategy rolling --max-in-flight 2"),
        "{error}"
    );
    assert_eq!(outcome.last_line(), "nothing was changed");
    let changing = w.changing_calls();
    assert!(
        changing.is_empty(),
        "no call that changes anything: {changing:?}"
    );
    assert_eq!(w.app_names().await, vec!["web".to_string()]);
    w.settle().await;
    assert_no_failures(&load.stop().await);
    assert_eq!(w.serving("web").await, "v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strategy_auto_deploys_in_place_with_the_max_in_flight_that_fits() {
    let w = web_under_quota(fast(), 400).await;
    let web = w
        .client()
        .find_app(&SpaceGuid::new(w.sim.space_guid()), "web")
        .await
        .unwrap()
        .unwrap()
        .guid;
    let load = w.load("web").await;
    let m = w.web_version("v2", 4);
    let args = PushArgs {
        strategy: Strategy::Auto,
        ..push_args(&m)
    };
    let started = Instant::now();
    let (outcome, events) = w.push(args).await;
    let took = started.elapsed();
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let chosen = events
        .iter()
        .find_map(|e| match e {
            Event::StrategyChosen {
                strategy,
                max_in_flight,
                reason,
            } => Some((strategy.clone(), *max_in_flight, reason.clone())),
            _ => None,
        })
        .expect("auto says what it chose");
    eprintln!("auto deployed in {took:?}: {chosen:?}");
    assert_eq!((chosen.0.as_str(), chosen.1), ("rolling", Some(2)));
    assert!(
        chosen.2.starts_with(
            "the space quota 'small' (space 'space') leaves room for 2 more instances of 64 MB, not for the blue-green candidate (256 MB)"
        ),
        "{}",
        chosen.2
    );
    let body: serde_json::Value = serde_json::from_str(
        &w.sim
            .call_log()
            .into_iter()
            .find(|c| c.method == "POST" && c.path == "/v3/deployments")
            .expect("a deployment")
            .body,
    )
    .unwrap();
    assert_eq!(body["strategy"], "rolling");
    assert_eq!(body["options"]["max_in_flight"], 2);
    w.settle().await;
    let report = load.stop().await;
    assert_no_failures(&report);
    assert_eq!(w.serving("web").await, "v2");
    let after = w
        .client()
        .find_app(&SpaceGuid::new(w.sim.space_guid()), "web")
        .await
        .unwrap()
        .unwrap()
        .guid;
    assert_eq!(after, web, "the same app (GUID) serves");
    eprintln!(
        "auto: {} requests, {} failed, served {:?}",
        report.total, report.failed, report.served
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_used_up_while_the_candidate_stages_rolls_back_with_cloud_controllers_message() {
    // 600 MB: web (256) and hog (64) run; the candidate (256) fits. While it stages, hog
    // grows by 256 MB: the candidate's start no longer fits.
    let w = web_under_quota(
        SimConfig {
            staging_delay: Duration::from_millis(800),
            ..fast()
        },
        600,
    )
    .await;
    let hog = w.write_version("hog-v1", &[AppVersion::new("hog", 1)]);
    w.push_deployed(push_args(&hog)).await;
    let c = w.client();
    let hog_guid: AppGuid = c
        .find_app(&SpaceGuid::new(w.sim.space_guid()), "hog")
        .await
        .unwrap()
        .unwrap()
        .guid;
    let hog_web = c.get_app_process(&hog_guid, "web").await.unwrap().guid;
    let load = w.load("web").await;
    let m = w.web_version("v2", 4);
    w.sim.clear_call_log();
    let someone_else = async {
        w.wait_for_call("POST", "/v3/builds").await;
        c.scale_process(
            &hog_web,
            &ProcessScale {
                instances: Some(5),
                ..ProcessScale::default()
            },
        )
        .await
        .expect("hog fits: 576 of 600 MB");
    };
    let started = Instant::now();
    let ((outcome, events), ()) = tokio::join!(w.push(push_args(&m)), someone_else);
    let took = started.elapsed();
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?} {events:#?}");
    };
    eprintln!("rolled back after {took:?}: {error}");
    assert!(
        error.to_string().contains("memory space_quota_exceeded"),
        "{error}"
    );
    assert!(
        error.to_string().contains("422 CF-UnprocessableEntity"),
        "{error}"
    );
    w.settle().await;
    assert_no_failures(&load.stop().await);
    assert_eq!(
        w.app_names().await,
        vec!["hog".to_string(), "web".to_string()]
    );
    assert_eq!(w.serving("web").await, "v1");
    let routes = w.listing().await.route_table(ToString::to_string, true);
    assert!(
        !routes.keys().any(|r| r.contains("-temp")),
        "the temp route is gone: {routes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_deployment_stalled_by_a_lowered_quota_shows_cloud_controllers_error() {
    let w = web_under_quota(fast(), 400).await;
    // New instances take a while to start: the quota is lowered before the first scale-up.
    w.sim.faults().slow_start("web", Duration::from_millis(800));
    let load = w.load("web").await;
    let m = w.web_version("v2", 4);
    let args = {
        let base = push_args(&m);
        PushArgs {
            strategy: Strategy::Rolling,
            max_in_flight: Some(1),

            common: CommonFlags {
                timeout: Duration::from_secs(3),
                ..base.common
            },
            ..base
        }
    };
    w.sim.clear_call_log();
    let admin = async {
        w.wait_for_call("POST", "/v3/deployments").await;
        // 320 MB run now (4 old + 1 new instance); the next new instance needs 64 more.
        w.sim
            .faults()
            .set_quota(QuotaScope::Space, Some(small(300)));
    };
    let started = Instant::now();
    let ((outcome, events), ()) = tokio::join!(w.push(args), admin);
    let took = started.elapsed();
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?} {events:#?}");
    };
    eprintln!("rolled back after {took:?}: {error}");
    assert!(
        error.to_string().contains("made no progress for 3s"),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("Cloud Controller: memory space_quota_exceeded"),
        "{error}"
    );
    assert!(
        error.to_string().contains("last successful health check"),
        "{error}"
    );
    let waited_with_reason = events.iter().any(|e| {
        matches!(e, Event::Waiting { detail, .. } if detail.contains("Cloud Controller: memory space_quota_exceeded"))
    });
    assert!(waited_with_reason, "the wait said why: {events:#?}");
    w.settle().await;
    assert_no_failures(&load.stop().await);
    assert_eq!(w.serving("web").await, "v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strategy_auto_on_a_cloud_controller_without_max_in_flight_replaces_one_at_a_time() {
    // 3.160 has rolling deployments but not `max_in_flight` (3.173): one new instance at a time.
    let w = web_under_quota(
        SimConfig {
            api_version: "3.160.0".into(),
            ..fast()
        },
        400,
    )
    .await;
    let load = w.load("web").await;
    let m = w.web_version("v2", 4);
    let (outcome, events) = w
        .push(PushArgs {
            strategy: Strategy::Auto,
            ..push_args(&m)
        })
        .await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert!(
        events.iter().any(|e| matches!(e,
            Event::StrategyChosen { strategy, max_in_flight: Some(1), .. } if strategy == "rolling")),
        "{events:#?}"
    );
    let body: serde_json::Value = serde_json::from_str(
        &w.sim
            .call_log()
            .into_iter()
            .find(|c| c.method == "POST" && c.path == "/v3/deployments")
            .expect("a deployment")
            .body,
    )
    .unwrap();
    assert!(
        body.get("options").is_none(),
        "nothing 3.160 rejects: {body}"
    );
    w.settle().await;
    assert_no_failures(&load.stop().await);
    assert_eq!(w.serving("web").await, "v2");
}
