//! End-to-end: the call budget. The simulator's standard deploy (a second blue-green push of
//! a 2-instance app, smoke-tested) costs at most [`BUDGET`] Cloud Controller requests, and the
//! run's `requests` event says how many by phase, as the simulator's call log counts them.

use cf_zero_downtime::command::flags::CommonFlags;
use cf_zero_downtime::command::push::PushArgs;
use cf_zero_downtime::deploy::Outcome;
use cf_zero_downtime::deploy::budget::Phase;

use crate::support::sim_world::{fast, push_args, requests_event, world};

/// The most requests the standard deploy may send. A change that adds requests fails here:
/// lower it when a change saves some.
const BUDGET: u64 = 40;

#[tokio::test]
async fn the_standard_deploy_stays_within_its_request_budget() {
    let w = world(fast()).await;
    w.push_deployed(push_args(&w.web_version("v1", 2))).await;
    w.sim.clear_call_log();
    let base = push_args(&w.web_version("v2", 2));
    let args = PushArgs {
        common: CommonFlags {
            smoke_test_path: Some("/".into()),
            ..base.common
        },
        ..base
    };
    let (outcome, events) = w.push(args).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let requests = requests_event(&events);
    let calls = w.sim.call_log();
    let log: Vec<String> = calls
        .iter()
        .map(|c| format!("{} {}?{}", c.method, c.path, c.query))
        .collect();
    eprintln!("{requests}\n{}", log.join("\n"));
    assert_eq!(requests.total, calls.len() as u64, "{requests}: {log:#?}");
    assert!(requests.of(Phase::Preflight) > 0, "{requests}");
    assert!(requests.of(Phase::Health) > 0, "{requests}");
    assert!(
        requests.total <= BUDGET,
        "{requests}: over the budget of {BUDGET}"
    );
}
