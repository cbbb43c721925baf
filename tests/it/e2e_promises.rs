//! End-to-end: the promises that the platform tests hardest, on the simulator under load.
//!
//! - Ctrl-C under a cf CLI that dies at once (the Go peer in `-cf-like` mode, the plugin
//!   binary in its process group): at every phase the plugin, left alone, ends in a clean
//!   state, rolling back before the switch and finishing it after.
//! - A new version that never turns healthy (Diego restarts it at once, CRASHED is never
//!   seen) is refused at its first crash, not at `--timeout`.
//! - Optional platform APIs that are forbidden, missing or absent do not stop a deploy.

use std::path::Path;
use std::time::Duration;

use cf_zero_downtime::command::flags::CommonFlags;
use cf_zero_downtime::command::push::PushArgs;
use cf_zero_downtime::deploy::Strategy;
use cf_zero_downtime::deploy::{Event, Outcome};
use cf_zero_downtime::sim::{OptionalApi, SimConfig, Unavailable};

use crate::support::sim_world::{World, assert_no_failures, fast, push_args, world};

/// Apps (sorted names) and route url → app names.
async fn state(w: &World) -> (Vec<String>, Vec<(String, Vec<String>)>) {
    let l = w.listing().await;
    let mut apps: Vec<String> = l.apps.iter().map(|a| a.name.clone()).collect();
    apps.sort();
    let routes = l
        .route_table(ToString::to_string, false)
        .into_iter()
        .collect();
    (apps, routes)
}

fn deployed_state(w: &World) -> (Vec<String>, Vec<(String, Vec<String>)>) {
    (
        vec!["web".to_string()],
        vec![(
            format!("web.{}", w.sim.app_domain()),
            vec!["web".to_string()],
        )],
    )
}

async fn first_deploy(w: &World) {
    let m = w.web_version("v1", 2);
    w.push_deployed(push_args(&m)).await;
}

/// The phases of a swap, each recognised by the first API call of the phase.
const PHASES: &[(&str, &str, &str)] = &[
    ("candidate", "POST", "/actions/apply_manifest"),
    ("staging", "POST", "/v3/builds"),
    ("health", "POST", "/actions/start"),
    ("drain", "DELETE", "/destinations/"),
];

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Go (apt-get install golang-go); run: cargo test --locked -- --include-ignored"]
async fn ctrl_c_under_a_cf_cli_that_dies_ends_clean_at_every_phase() {
    use crate::support::cf_cli::{CfLikePush, fakecf, push_cf_like};

    let Some(fakecf) = fakecf() else {
        return;
    };
    for (phase, method, path_part) in PHASES {
        let w = world(SimConfig {
            staging_delay: Duration::from_millis(800),
            start_delay: Duration::from_millis(400),
            ..fast()
        })
        .await;
        first_deploy(&w).await;
        let before = state(&w).await;
        let load = w.load("web").await;
        let m = w.web_version("v2", 2);
        w.sim.clear_call_log();
        let CfLikePush {
            mut run,
            pid,
            token,
        } = push_cf_like(fakecf, &w, &m, "3s");
        // Wait (bounded) for the phase's first call, then press Ctrl-C.
        w.wait_for_call(method, path_part).await;
        run.interrupt();
        run.wait_peer(Duration::from_secs(10))
            .expect("the fake cf CLI died at once");
        let out = run
            .wait_plugin_exit(pid, Duration::from_secs(90))
            .expect("the plugin ended by itself");
        w.settle().await;
        assert_no_failures(&load.stop().await);
        let last = out.stdout.trim_end().lines().last().unwrap_or_default();
        let ctx = format!("{phase}: {out:?}");
        if *phase == "drain" {
            assert!(out.stderr.contains("Interrupted after the switch"), "{ctx}");
            assert_eq!(last, "deployed", "{ctx}");
            assert_eq!(state(&w).await, deployed_state(&w), "{ctx}");
            assert_eq!(w.serving("web").await, "v2", "{ctx}");
        } else {
            assert!(out.stderr.contains("Interrupted: rolling back"), "{ctx}");
            assert_eq!(last, "rolled back, the old version is serving", "{ctx}");
            assert_eq!(state(&w).await, before, "{ctx}");
            assert_eq!(w.serving("web").await, "v1", "{ctx}");
        }
        assert!(
            !out.stdout.contains(token.trim_start_matches("bearer ")),
            "{ctx}"
        );
        w.sim.shutdown().await;
    }
}

fn never_healthy_sim() -> SimConfig {
    SimConfig {
        // Diego's 60 s health-check timeout, scaled down; restarts are immediate.
        health_check_timeout: Duration::from_millis(600),
        ..fast()
    }
}

/// Push arguments with a long `--timeout`: a refusal must come from the crash, not from it.
fn patient(m: &Path, strategy: Strategy) -> PushArgs {
    {
        let base = push_args(m);
        PushArgs {
            strategy,

            common: CommonFlags {
                timeout: Duration::from_secs(120),
                ..base.common
            },
            ..base
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_healthy_version_is_refused_at_its_first_crash() {
    // Without audit events (forbidden), log-cache's crash lines are read instead.
    for (strategy, audit_forbidden) in [
        (Strategy::BlueGreen, false),
        (Strategy::Rolling, false),
        (Strategy::BlueGreen, true),
    ] {
        let w = world(never_healthy_sim()).await;
        first_deploy(&w).await;
        if audit_forbidden {
            w.sim
                .faults()
                .optional_api(OptionalApi::AuditEvents, Unavailable::Forbidden);
        }
        let before = state(&w).await;
        let load = w.load("web").await;
        let m = w.web_version("v2", 2);
        let name = if strategy == Strategy::BlueGreen {
            "web-candidate"
        } else {
            "web"
        };
        // Applies to instances started from now on: the v2 ones.
        w.sim
            .faults()
            .never_healthy(name, Duration::from_millis(600));
        let (outcome, events) = w
            .push_bounded(patient(&m, strategy), Duration::from_secs(300))
            .await;
        w.settle().await;
        assert_no_failures(&load.stop().await);
        let ctx = format!("{strategy:?} (audit events forbidden: {audit_forbidden}): {outcome:?}");
        let Outcome::RolledBack { error } = &outcome else {
            panic!("{ctx} {events:#?}")
        };
        // Refused on a crash (the first is enough), not by the 120 s --timeout, whose error
        // says "no progress for".
        assert!(error.to_string().contains("crashed"), "{ctx}");
        assert!(!error.to_string().contains("no progress"), "{ctx}");
        assert_eq!(w.serving("web").await, "v1", "{ctx}");
        if strategy == Strategy::BlueGreen {
            assert_eq!(state(&w).await, before, "{ctx}");
        }
        w.sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_or_missing_optional_apis_deploy_with_a_warning() {
    for (api, mode) in [
        (OptionalApi::NetworkPolicy, Unavailable::Forbidden),
        (OptionalApi::NetworkPolicy, Unavailable::NotFound),
        (OptionalApi::NetworkPolicy, Unavailable::Absent),
        (OptionalApi::AuditEvents, Unavailable::Forbidden),
        (OptionalApi::LogCache, Unavailable::Absent),
    ] {
        let w = world(fast()).await;
        first_deploy(&w).await;
        let load = w.load("web").await;
        w.sim.faults().optional_api(api, mode);
        let m = w.web_version("v2", 2);
        let (outcome, events) = w.push(push_args(&m)).await;
        w.settle().await;
        assert_no_failures(&load.stop().await);
        let ctx = format!("{api:?} {mode:?}: {outcome:?}");
        assert_eq!(outcome, Outcome::Deployed, "{ctx} {events:#?}");
        assert_eq!(state(&w).await, deployed_state(&w), "{ctx}");
        assert_eq!(w.serving("web").await, "v2", "{ctx}");
        if api == OptionalApi::NetworkPolicy {
            assert!(
                events.iter().any(|e| matches!(e, Event::Warning { message, .. }
                    if message.contains("network policies") && message.contains("not carried over"))),
                "{ctx}: {events:#?}"
            );
        }
        w.sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_tests_reach_the_candidate_through_the_router_given() {
    let w = world(fast()).await;
    first_deploy(&w).await;
    let load = w.load("web").await;
    let m = w.web_version("v2", 2);
    let router = w.sim.router_addr().to_string();
    let args = {
        let base = push_args(&m);

        PushArgs {
            common: CommonFlags {
                smoke_test_path: Some("/".into()),
                // curl dials the router too, with the route as Host: only $CF_ZDT_CONNECT_TO gets it there.
                smoke_test: Some(
                    r#"curl -sf --max-time 5 --connect-to "$CF_ZDT_CONNECT_TO""#.into(),
                ),
                smoke_test_router: Some(router),
                smoke_test_scheme: cf_zero_downtime::command::flags::SmokeScheme::Http,
                ..base.common
            },
            ..base
        }
    };
    // Without the harness's probe override: the flags alone must get the probe there.
    let (outcome, events) = w.push_probing_by_flags(args).await;
    w.settle().await;
    assert_no_failures(&load.stop().await);
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert_eq!(w.serving("web").await, "v2");
}
