//! End-to-end: blue-green canary analysis (`--canary-steps`) against the in-process
//! simulator under steady load: the simulator's router records every request in the app's
//! log-cache (timers and `RTR` lines), and its faults make the candidate answer a share of
//! requests with a 5xx.

use std::time::Duration;

use cf_zero_downtime::cf::AppGuid;
use cf_zero_downtime::command::push::PushArgs;
use cf_zero_downtime::deploy::analysis::VerdictKind;
use cf_zero_downtime::deploy::{Event, Outcome};

use crate::support::sim_world::{World, assert_no_failures, fast, push_args, world};

/// Canary steps `steps` (then 100), two-second windows, a verdict from 5 requests on (a
/// loaded test machine sends few; the simulator's 5xx share is exact, so 5 requests to a
/// candidate answering 20% 5xx hold one).
fn canary_args(manifest: &std::path::Path, steps: Vec<u32>) -> PushArgs {
    PushArgs {
        canary_steps: steps,
        analysis_interval: Some(Duration::from_secs(2)),
        min_requests: Some(5),
        ..push_args(manifest)
    }
}

/// The `web` app's guid and `web` instance count, and the apps the route `web` goes to.
async fn live_state(w: &World) -> (String, u32, Vec<String>, Vec<String>) {
    let listing = w.listing().await;
    let web = listing
        .apps
        .iter()
        .find(|a| a.name == "web")
        .expect("web exists");
    let instances = w
        .client()
        .get_app_process(&AppGuid::new(web.guid.as_str()), "web")
        .await
        .unwrap()
        .instances;
    let table = listing.route_table(ToString::to_string, false);
    let route = table
        .get(&format!("web.{}", w.sim.app_domain()))
        .cloned()
        .unwrap_or_default();
    let names = listing.apps.iter().map(|a| a.name.clone()).collect();
    (web.guid.as_str().to_string(), instances, route, names)
}

fn analyses(events: &[Event]) -> Vec<(usize, u32, VerdictKind, u64, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::CanaryAnalysis {
                step,
                traffic_share_pct,
                verdict,
                candidate,
                ..
            } => Some((
                *step,
                *traffic_share_pct,
                *verdict,
                candidate.requests,
                candidate.errors,
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_candidate_promotes_through_every_step_without_a_failed_request() {
    let w = world(fast()).await;
    w.push_deployed(push_args(&w.web_version("v1", 4))).await;
    let load = w.load("web").await;
    let m = w.web_version("v2", 4);
    let (outcome, events) = w.push(canary_args(&m, vec![25, 50])).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    w.settle().await;
    let report = load.stop().await;
    assert_no_failures(&report);
    let a = analyses(&events);
    assert_eq!(a.len(), 2, "{a:?}");
    // 25% next to 4 live instances: 2 candidate instances (a third of the requests); 50%: 4.
    assert_eq!(
        (a[0].0, a[0].1, a[0].2),
        (1, 33, VerdictKind::Pass),
        "{a:?}"
    );
    assert_eq!(
        (a[1].0, a[1].1, a[1].2),
        (2, 50, VerdictKind::Pass),
        "{a:?}"
    );
    assert!(a.iter().all(|x| x.3 >= 5 && x.4 == 0), "{a:?}");
    assert!(
        events.iter().any(
            |e| matches!(e, Event::CanaryPromoted { reason, .. } if reason.contains("passed"))
        ),
        "{events:#?}"
    );
    assert_eq!(w.serving("web").await, "v2");
    let (_, instances, route, names) = live_state(&w).await;
    assert_eq!(instances, 4, "the new version runs at its full count");
    assert_eq!(route, vec!["web".to_string()]);
    assert_eq!(names, vec!["web".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_answering_20_percent_5xx_is_rolled_back_at_the_first_step() {
    let w = world(fast()).await;
    w.push_deployed(push_args(&w.web_version("v1", 4))).await;
    let before = live_state(&w).await;
    w.sim.faults().http_5xx_share("web-candidate", 20);
    let load = w.load("web").await;
    let m = w.web_version("v2", 4);
    let (outcome, events) = w.push(canary_args(&m, vec![25, 50])).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("not rolled back: {outcome:?} {events:#?}");
    };
    assert!(
        error
            .to_string()
            .contains("canary analysis of app 'web' failed at step 1 of 3")
            && error.to_string().contains("--max-error-rate"),
        "{error}"
    );
    w.settle().await;
    let report = load.stop().await;
    let a = analyses(&events);
    assert_eq!(a.len(), 1, "judged once: {a:?}");
    assert_eq!((a[0].0, a[0].2), (1, VerdictKind::Fail), "{a:?}");
    assert!(a[0].4 > 0, "the router saw the candidate's 5xx: {a:?}");
    // The candidate was unmapped before anything else was undone.
    let undos: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::UndoFinished { description, .. } => Some(description.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        undos.first().is_some_and(|d| d.starts_with("unmap route")),
        "{undos:?}"
    );
    // The only failed requests are the candidate's own 5xx: at most 20% of its third of the
    // requests, and all of them answered 500.
    assert!(report.total > 0);
    assert!(
        report.failed * 100 <= report.total * 20 * 34 / 100,
        "{} of {} failed: {:?}",
        report.failed,
        report.total,
        report.failures
    );
    assert!(
        report.failures.iter().all(|f| f.what.contains("500")),
        "{:?}",
        report.failures
    );
    // The live app is untouched: same app, same instances, the only one on its route.
    let after = live_state(&w).await;
    assert_eq!(after, before);
    assert_eq!(after.2, vec!["web".to_string()]);
    assert_eq!(w.serving("web").await, "v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_log_cache_the_analysis_fails_before_any_change() {
    use cf_zero_downtime::sim::{OptionalApi, Unavailable};
    let w = world(fast()).await;
    w.push_deployed(push_args(&w.web_version("v1", 2))).await;
    let before = live_state(&w).await;
    w.sim
        .faults()
        .optional_api(OptionalApi::LogCache, Unavailable::NotFound);
    let m = w.web_version("v2", 2);
    let (outcome, events) = w.push(canary_args(&m, vec![25])).await;
    let Outcome::NothingChanged { error } = &outcome else {
        panic!("changed something: {outcome:?} {events:#?}");
    };
    assert!(error.to_string().contains("request records"), "{error}");
    assert_eq!(live_state(&w).await, before);
}

/// `--strategy canary --analysis`: the new and old processes share the app GUID; the
/// analysis splits the router's access lines by the new process's instances.
fn deployment_canary_args(manifest: &std::path::Path) -> PushArgs {
    PushArgs {
        strategy: cf_zero_downtime::deploy::Strategy::Canary,
        analysis: true,
        instance_steps: vec![50],
        analysis_interval: Some(Duration::from_secs(2)),
        min_requests: Some(5),
        ..push_args(manifest)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_deployment_is_judged_at_its_pause_and_continued() {
    let w = world(fast()).await;
    w.push_deployed(push_args(&w.web_version("v1", 2))).await;
    let (guid, ..) = live_state(&w).await;
    let load = w.load("web").await;
    let m = w.web_version("v2", 2);
    let (outcome, events) = w.push(deployment_canary_args(&m)).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    w.settle().await;
    assert_no_failures(&load.stop().await);
    let judged: Vec<(VerdictKind, u64, u64)> = events
        .iter()
        .filter_map(|e| match e {
            Event::CanaryAnalysis {
                verdict,
                candidate,
                live,
                ..
            } => Some((*verdict, candidate.requests, live.requests)),
            _ => None,
        })
        .collect();
    assert_eq!(judged.len(), 1, "{judged:?}");
    let (verdict, new, old) = judged[0];
    assert_eq!(verdict, VerdictKind::Pass, "{events:#?}");
    assert!(new >= 5 && old > 0, "both versions seen apart: {judged:?}");
    assert_eq!(live_state(&w).await.0, guid, "same app");
    assert_eq!(w.serving("web").await, "v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_deployment_failing_its_analysis_is_canceled_with_v1_serving() {
    let w = world(fast()).await;
    w.push_deployed(push_args(&w.web_version("v1", 2))).await;
    let before = live_state(&w).await;
    // The fault acts on the app's name: both processes answer 20% 5xx, so the new one is
    // above --max-error-rate (the margin over the live version holds: that is said too).
    w.sim.faults().http_5xx_share("web", 20);
    let load = w.load("web").await;
    let m = w.web_version("v2", 2);
    let (outcome, events) = w.push(deployment_canary_args(&m)).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("not rolled back: {outcome:?} {events:#?}");
    };
    assert!(
        error
            .to_string()
            .contains("canary analysis of app 'web' failed"),
        "{error}"
    );
    let _ = load.stop().await;
    w.sim.faults().http_5xx_share("web", 0);
    w.settle().await;
    assert_eq!(live_state(&w).await, before);
    assert_eq!(w.serving("web").await, "v1");
}
