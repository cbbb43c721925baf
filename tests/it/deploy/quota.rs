//! The quota check against `FakeCf`: a deploy that does not fit in the space's or the org's
//! quota is refused before any change with the numbers of each limit; `--strategy auto` falls
//! back to a rolling (or canary) deployment with the largest `--max-in-flight` that fits; a
//! quota refusal in the middle of a run rolls back with Cloud Controller's message.
//!
//! The fake's world: `web` (A) runs 2 × 64 MB, `backend` (B) 1 × 64 MB, two routes; usage
//! 192 MB, 3 instances, 2 routes.

use std::collections::BTreeMap;
use std::time::Duration;

use cf_zero_downtime::deploy::Strategy;
use cf_zero_downtime::deploy::api::{ApiError, DeploymentState, DeploymentStrategy, Quotas};
use cf_zero_downtime::deploy::event::{Event, Outcome};
use cf_zero_downtime::deploy::request::{AppSpec, DeployRequest};

use crate::support::fake_cf::*;
use cf_zero_downtime::deploy::api::{QuotaLevel, QuotaLimits, QuotaUsage};
use cf_zero_downtime::deploy::request::AutoFallback;

fn limited(limits: QuotaLimits, memory_mb: u64, instances: u64, routes: u64) -> QuotaLevel {
    QuotaLevel::Limited {
        limits,
        usage: QuotaUsage {
            memory_mb,
            instances,
            routes: Some(routes),
        },
    }
}

fn small() -> QuotaLimits {
    QuotaLimits {
        name: "small".into(),
        ..QuotaLimits::default()
    }
}

/// A quota `small` limiting the total memory to `mb` MB.
fn memory(mb: u64) -> QuotaLimits {
    QuotaLimits {
        total_memory_mb: Some(mb),
        ..small()
    }
}

/// `limits` counting what [`world`] runs: 192 MB, 3 instances, 2 routes.
fn world_usage(limits: QuotaLimits) -> QuotaLevel {
    limited(limits, 192, 3, 2)
}

/// `cf` (a [`world`] or [`rolling_world`]) with a space quota of `limits`.
fn under_space_quota(cf: FakeCf, limits: QuotaLimits) -> FakeCf {
    cf.lock().quotas.space = world_usage(limits);
    cf
}

/// The world with `web` at 4 instances (320 MB, 5 instances in use) and a space quota of
/// `memory_mb` MB.
fn web_of_four(memory_mb: u64) -> FakeCf {
    let cf = world();
    cf.with_app("A", |a| a.processes = vec![("web".into(), 4)]);
    cf.lock().quotas.space = limited(memory(memory_mb), 320, 5, 2);
    cf
}

fn auto_req(fallback: DeploymentStrategy) -> DeployRequest {
    DeployRequest {
        strategy: Strategy::Auto,
        timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(20),
        fallback: Some(AutoFallback {
            strategy: fallback,
            instance_steps: Vec::new(),
            max_in_flight_cap: None,
            max_in_flight_supported: true,
            unsupported: None,
        }),
        ..req()
    }
}

fn refused(outcome: &Outcome, events: &[Event]) -> String {
    let Outcome::NothingChanged { error } = outcome else {
        panic!("not refused: {outcome:?} {events:#?}")
    };
    error.to_string()
}

fn chosen(events: &[Event]) -> Option<(String, Option<u32>, String)> {
    events.iter().find_map(|e| match e {
        Event::StrategyChosen {
            strategy,
            max_in_flight,
            reason,
        } => Some((strategy.clone(), *max_in_flight, reason.clone())),
        _ => None,
    })
}

#[tokio::test]
async fn blue_green_that_does_not_fit_next_to_the_live_app_is_refused_with_the_numbers() {
    // 256 MB: the live apps (192) fit, the candidate's 2 × 64 more do not.
    let cf = under_space_quota(world(), memory(256));
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    let error = refused(&outcome, &events);
    assert!(
        error.starts_with("a blue-green deploy (the candidate runs next to the live app) does not fit in the quota:"),
        "{error}"
    );
    assert!(
        error.contains(
            "space quota 'small' (space 's'): memory: blue-green needs 128 MB more, 64 MB are left: 320 MB of 256 MB (in use 192 MB, of which live app web 128 MB; candidate of web 2 × 64 MB)"
        ),
        "{error}"
    );
    // The way out names the in-place deploy that fits: one new instance of 64 MB at a time.
    assert!(
        error.contains("--strategy rolling --max-in-flight 1"),
        "{error}"
    );
    assert!(error.contains("cf update-space-quota small"), "{error}");
    assert!(cf.mutating_calls().is_empty(), "{:?}", cf.mutating_calls());
    assert_eq!(outcome.last_line(), "nothing was changed");
}

#[tokio::test]
async fn each_limit_has_its_own_message_and_unlimited_or_unknown_levels_pass() {
    let cases: Vec<(&str, QuotaLevel, QuotaLevel, &str)> = vec![
        (
            "instances",
            world_usage(QuotaLimits {
                total_instances: Some(4),
                ..small()
            }),
            QuotaLevel::Unlimited,
            "space quota 'small' (space 's'): instances: blue-green needs 2 more, 1 left: 5 of 4 (in use 3)",
        ),
        (
            "instance memory",
            world_usage(QuotaLimits {
                instance_memory_mb: Some(32),
                ..small()
            }),
            QuotaLevel::Unlimited,
            "instance memory: process web of app web asks for 64 MB per instance, the quota allows 32 MB",
        ),
        (
            "routes",
            world_usage(QuotaLimits {
                total_routes: Some(2),
                ..small()
            }),
            QuotaLevel::Unlimited,
            "routes: blue-green creates 1 route, 0 left: 3 of 2 (in use 2; new: web-temp.example.com)",
        ),
        (
            "org memory",
            QuotaLevel::Unlimited,
            limited(
                QuotaLimits {
                    name: "default".into(),
                    total_memory_mb: Some(1000),
                    ..QuotaLimits::default()
                },
                900,
                10,
                5,
            ),
            "org quota 'default' (org 'o'): memory: blue-green needs 128 MB more, 100 MB are left: 1028 MB of 1000 MB",
        ),
    ];
    for (what, space, org, says) in cases {
        let cf = world();
        cf.lock().quotas = Quotas { space, org };
        let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
        let error = refused(&outcome, &events);
        assert!(error.contains(says), "{what}: {error}");
        assert!(cf.mutating_calls().is_empty(), "{what}");
        if what == "instance memory" {
            // No in-place deploy helps against a per-instance limit.
            assert!(error.contains("less memory per instance"), "{error}");
            assert!(!error.contains("--max-in-flight"), "{error}");
        }
    }
    // Unlimited limits (null) and unreadable levels do not stop a deploy; an unreadable one is
    // said once.
    let cf = world();
    cf.lock().quotas = Quotas {
        space: world_usage(small()),
        org: QuotaLevel::Unknown(
            "the organization quota cannot be read (403 CF-NotAuthorized)".into(),
        ),
    };
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let said: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Warning { message, .. } if message.contains("cannot be read") => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains("the deploy goes on without checking that quota"),
        "{}",
        said[0]
    );
}

#[tokio::test]
async fn strategy_auto_is_blue_green_when_the_candidate_fits() {
    let cf = under_space_quota(world(), memory(1024));
    let (outcome, events) =
        deploy(&cf, &auto_req(DeploymentStrategy::Rolling), &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let (strategy, n, reason) = chosen(&events).expect("a strategy chosen");
    assert_eq!((strategy.as_str(), n), ("blue-green", None));
    assert!(reason.contains("leave room for the candidate"), "{reason}");
    assert!(cf.lock().created_deployments.is_empty());
    assert!(
        cf.app_named("web").unwrap().app.guid != "A",
        "a new app serves"
    );
}

#[tokio::test]
async fn strategy_auto_falls_back_to_rolling_with_the_largest_max_in_flight_that_fits() {
    // web runs 4 × 64 MB; the quota leaves 128 MB: the candidate (4 × 64) does not fit, two
    // new instances at a time do.
    let cf = web_of_four(448);
    let four = AppSpec {
        instances: BTreeMap::from([("web".to_string(), 4)]),
        ..rolling_spec("web")
    };
    let (outcome, events) = deploy(
        &cf,
        &auto_req(DeploymentStrategy::Rolling),
        std::slice::from_ref(&four),
    )
    .await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let (strategy, n, reason) = chosen(&events).expect("a strategy chosen");
    assert_eq!((strategy.as_str(), n), ("rolling", Some(2)));
    assert_eq!(
        reason,
        "the space quota 'small' (space 's') leaves room for 2 more instances of 64 MB, not for the blue-green candidate (256 MB): deploying rolling with --max-in-flight 2 instead of blue-green"
    );
    let created = cf.lock().created_deployments.clone();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].strategy, DeploymentStrategy::Rolling);
    assert_eq!(created[0].max_in_flight, Some(2));
    assert_eq!(cf.app_named("web").unwrap().app.guid, "A", "same app GUID");

    // --max-in-flight caps the fallback; a smoke test asks for a canary's pause.
    let cf = web_of_four(448);
    let mut r = auto_req(DeploymentStrategy::Rolling);
    if let Some(f) = &mut r.fallback {
        f.max_in_flight_cap = Some(1);
    }
    let (outcome, events) = deploy(&cf, &r, std::slice::from_ref(&four)).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert_eq!(chosen(&events).map(|c| c.1), Some(Some(1)));

    // Nothing fits: refused with the numbers, nothing changed.
    let cf = under_space_quota(world(), memory(200));
    let (outcome, events) =
        deploy(&cf, &auto_req(DeploymentStrategy::Rolling), &[spec("web")]).await;
    let error = refused(&outcome, &events);
    assert!(
        error.contains("memory: blue-green needs 128 MB more, 8 MB are left: 320 MB of 200 MB"),
        "{error}"
    );
    assert!(
        error.contains("not even a rolling deployment with --max-in-flight 1 fits"),
        "{error}"
    );
    assert!(cf.mutating_calls().is_empty(), "{:?}", cf.mutating_calls());
}

#[tokio::test]
async fn strategy_auto_falls_back_to_canary_and_says_why_it_cannot() {
    let cf = under_space_quota(world(), memory(256));
    let (outcome, events) = deploy(
        &cf,
        &auto_req(DeploymentStrategy::Canary),
        &[rolling_spec("web")],
    )
    .await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert_eq!(
        chosen(&events).map(|c| (c.0, c.1)),
        Some(("canary".to_string(), Some(1)))
    );
    assert_eq!(
        cf.lock().created_deployments[0].strategy,
        DeploymentStrategy::Canary
    );
    // A Cloud Controller without deployments: refused with the reason.
    let cf = under_space_quota(world(), memory(256));
    let mut r = auto_req(DeploymentStrategy::Rolling);
    if let Some(f) = &mut r.fallback {
        f.unsupported = Some("deployments need Cloud Controller 3.x".into());
    }
    let (outcome, events) = deploy(&cf, &r, &[spec("web")]).await;
    let error = refused(&outcome, &events);
    assert!(
        error
            .contains("--strategy auto cannot fall back to a rolling deployment: deployments need"),
        "{error}"
    );
    assert!(cf.mutating_calls().is_empty());
}

#[tokio::test]
async fn an_explicit_rolling_deployment_checks_its_max_in_flight() {
    // 64 MB left: --max-in-flight 2 (128 MB) does not fit, 1 does.
    let cf = under_space_quota(rolling_world(), memory(256));
    let (outcome, events) =
        deploy(&cf, &rolling_req(Strategy::Rolling), &[rolling_spec("web")]).await;
    let error = refused(&outcome, &events);
    assert!(
        error.starts_with("a rolling deployment with --max-in-flight 2 does not fit in the quota:"),
        "{error}"
    );
    assert!(
        error.contains("memory: rolling with --max-in-flight 2 needs 128 MB more, 64 MB are left: 320 MB of 256 MB"),
        "{error}"
    );
    assert!(error.contains("--max-in-flight 1 fits"), "{error}");
    assert!(cf.mutating_calls().is_empty(), "{:?}", cf.mutating_calls());
    let r = DeployRequest {
        max_in_flight: Some(1),
        ..rolling_req(Strategy::Rolling)
    };
    let (outcome, events) = deploy(&cf, &r, &[rolling_spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
}

fn quota_422(detail: &str) -> ApiError {
    let mut e = ApiError::new(422, "CF-UnprocessableEntity", detail);
    e.code = Some(10008);
    e.with_request_id("req-q")
}

#[tokio::test]
async fn a_quota_used_up_mid_run_rolls_back_with_cloud_controllers_message() {
    // Blue-green: the candidate's start is refused.
    let cf = world();
    cf.lock()
        .errors
        .insert("start_app".into(), quota_422("memory space_quota_exceeded"));
    let before = cf.snapshot();
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?} {events:#?}")
    };
    assert!(
        error
            .to_string()
            .contains("422 CF-UnprocessableEntity (code 10008): memory space_quota_exceeded"),
        "{error}"
    );
    assert_eq!(cf.snapshot(), before, "everything undone");

    // Rolling: the deployment is refused; the environment snapshot is restored.
    let cf = rolling_world();
    let detail = "memory space_quota_exceeded for space s. This space's quota may not be large enough to support rolling deployments or your configured max-in-flight.";
    cf.lock()
        .errors
        .insert("create_deployment".into(), quota_422(detail));
    let (outcome, events) =
        deploy(&cf, &rolling_req(Strategy::Rolling), &[rolling_spec("web")]).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?} {events:#?}")
    };
    assert!(error.to_string().contains(detail), "{error}");
    assert_eq!(
        cf.lock()
            .env
            .get("A")
            .and_then(|e| e.get("GREETING"))
            .cloned(),
        Some("v1".to_string())
    );
}

#[tokio::test(start_paused = true)]
async fn a_stalled_deployment_shows_cloud_controllers_error_while_waiting_and_when_it_gives_up() {
    // The updater cannot scale the new instances up (someone else took the quota); they never
    // become healthy enough to move on.
    let cf = rolling_world();
    cf.lock()
        .new_instances
        .insert("A".into(), NewInstances::Stall);
    cf.lock().deployment_error = Some("memory space_quota_exceeded".into());
    let (outcome, events) =
        deploy(&cf, &rolling_req(Strategy::Rolling), &[rolling_spec("web")]).await;
    let waiting: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Waiting { what, detail, .. } if what == "deployment" => Some(detail),
            _ => None,
        })
        .collect();
    assert!(
        waiting
            .iter()
            .any(|d| d.ends_with("; Cloud Controller: memory space_quota_exceeded")),
        "{waiting:#?}"
    );
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?} {events:#?}");
    };
    assert!(
        error.to_string().contains(
            "made no progress for 5s (ACTIVE/DEPLOYING, 0 of 1 new instances running; Cloud Controller: memory space_quota_exceeded; last successful health check 2026-08-20T10:00:00Z)"
        ),
        "{error}"
    );
    assert_eq!(deployment_states(&cf), vec![DeploymentState::Canceled]);
}
