//! End-to-end: `--drain auto` on the simulator under load. The drain ends once the router
//! refuses the old app's instances and log-cache shows no request reaching it, long before
//! its maximum, under a 1 s and a 3 s route-propagation delay, with no failed request; without
//! log-cache it still ends safely (longer floor); when the router cannot be probed it falls
//! back to the fixed maximum and says why.

use std::path::PathBuf;
use std::time::Duration;

use cf_zero_downtime::command::flags::{DrainArg, SmokeScheme};
use cf_zero_downtime::deploy::{Event, Outcome};
use cf_zero_downtime::sim::{OptionalApi, SimConfig, Unavailable};

use crate::support::sim_world::{AppVersion, World, assert_no_failures, push_args, world};

/// Version `version` of `web`: 2 instances with the platform's default (port) health check.
fn web_v(w: &World, version: &str) -> PathBuf {
    w.write_version(version, &[AppVersion::new("web", 2).port_health()])
}

fn sim(propagation: Duration) -> SimConfig {
    SimConfig {
        route_propagation: propagation,
        stop_grace: Duration::from_millis(200),
        ..SimConfig::default()
    }
}

/// v1 deployed and routed (after the propagation delay).
async fn first_deploy(w: &World, propagation: Duration) {
    w.push_deployed(push_args(&web_v(w, "v1"))).await;
    tokio::time::sleep(propagation + Duration::from_millis(200)).await;
}

/// The one `DrainEnded` event: (early, reason).
fn drain_ended(events: &[Event]) -> (bool, String) {
    let ended: Vec<(bool, String)> = events
        .iter()
        .filter_map(|e| match e {
            Event::DrainEnded { early, reason, .. } => Some((*early, reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(ended.len(), 1, "{events:#?}");
    ended[0].clone()
}

/// Pushes v2 with `--drain auto` (maximum 10 s) under load; returns the events.
async fn push_auto_under_load(w: &World, propagation: Duration) -> Vec<Event> {
    let load = w.load("web").await;
    let args = {
        let mut args = push_args(&web_v(w, "v2"));
        args.common.drain = DrainArg::auto(Duration::from_secs(10));
        args
    };
    let (outcome, events) = w.push(args).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    tokio::time::sleep(propagation + Duration::from_millis(300)).await;
    assert_no_failures(&load.stop().await);
    assert_eq!(w.serving("web").await, "v2");
    events
}

async fn auto_drain_ends_early(propagation: Duration) {
    let w = world(sim(propagation)).await;
    first_deploy(&w, propagation).await;
    let events = push_auto_under_load(&w, propagation).await;
    let (early, reason) = drain_ended(&events);
    assert!(early, "{reason}");
    assert!(reason.starts_with("old app quiet for "), "{reason}");
    assert!(reason.contains("routers dropped it"), "{reason}");
    // While the router still had the old app, the drain said what it waited for.
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Waiting { what, detail, .. }
            if what == "drain" && detail.contains("routers to drop the old app"))),
        "{events:#?}"
    );
    w.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_drain_ends_early_with_one_second_propagation() {
    auto_drain_ends_early(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_drain_ends_early_with_three_second_propagation() {
    auto_drain_ends_early(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_drain_without_log_cache_relies_on_probes_and_a_longer_floor() {
    let propagation = Duration::from_secs(1);
    let w = world(sim(propagation)).await;
    first_deploy(&w, propagation).await;
    w.sim
        .faults()
        .optional_api(OptionalApi::LogCache, Unavailable::Absent);
    let events = push_auto_under_load(&w, propagation).await;
    let (early, reason) = drain_ended(&events);
    assert!(early, "{reason}");
    assert!(reason.contains("routers dropped it"), "{reason}");
    assert!(reason.contains("log-cache unavailable"), "{reason}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Warning { message, .. }
            if message.contains("cannot read the old app's requests from log-cache"))),
        "{events:#?}"
    );
    w.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_drain_falls_back_to_its_maximum_when_the_router_cannot_be_probed() {
    let w = world(sim(Duration::from_millis(50))).await;
    first_deploy(&w, Duration::from_millis(50)).await;
    // Nothing listens there: the probes cannot reach a router.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().to_string();
    drop(closed);
    let args = {
        let mut args = push_args(&web_v(&w, "v2"));
        args.common.drain = DrainArg::auto(Duration::from_millis(600));
        args.common.smoke_test_router = Some(dead);
        args.common.smoke_test_scheme = SmokeScheme::Http;
        args
    };
    // Only the flags decide where the probes go.
    let (outcome, events) = w.push_probing_by_flags(args).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let (early, reason) = drain_ended(&events);
    assert!(!early, "{reason}");
    assert!(
        reason.starts_with("fixed drain of 600ms: could not connect to the router"),
        "{reason}"
    );
    w.sim.shutdown().await;
}
