//! End-to-end: large apps. The health wait reads each process's stats once per poll, whatever
//! the instance count: a deploy of 100 instances sends the same requests per poll as one of 2
//! (O(processes) per poll, not O(instances)).

use cf_zero_downtime::deploy::budget::Phase;
use cf_zero_downtime::deploy::{Event, Outcome};

use crate::support::sim_world::{fast, push_args, requests_event, world};

/// What the health wait of a second blue-green push of `web` with `instances` sent.
#[derive(Debug)]
struct HealthWait {
    /// Polls of the instances: the `Waiting` reports plus the last poll, which ends the wait.
    polls: usize,
    /// `GET /v3/processes/:guid/stats` requests.
    stats: usize,
    /// Requests of the health phase (the run's `requests` event).
    health: u64,
    /// Requests that name one instance (`/instances/:index`).
    per_instance: usize,
}

async fn health_wait(instances: u32) -> HealthWait {
    let w = world(fast()).await;
    w.push_deployed(push_args(&w.web_version("v1", instances)))
        .await;
    w.sim.clear_call_log();
    let (outcome, events) = w.push(push_args(&w.web_version("v2", instances))).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let calls = w.sim.call_log();
    let log: Vec<String> = calls
        .iter()
        .map(|c| format!("{} {}?{}", c.method, c.path, c.query))
        .collect();
    let requests = requests_event(&events);
    let waits = events
        .iter()
        .filter(|e| matches!(e, Event::Waiting { what, .. } if what == "instances"))
        .count();
    let wait = HealthWait {
        polls: waits + 1,
        stats: calls
            .iter()
            .filter(|c| {
                c.method == "GET"
                    && c.path.starts_with("/v3/processes/")
                    && c.path.ends_with("/stats")
            })
            .count(),
        health: requests.of(Phase::Health),
        per_instance: calls
            .iter()
            .filter(|c| c.path.contains("/instances/"))
            .count(),
    };
    eprintln!(
        "{instances} instances: {wait:?}\n{requests}\n{}",
        log.join("\n")
    );
    // The deploy really ran `instances`: the new `web` has that many.
    let listing = w.listing().await;
    let web = listing
        .apps
        .iter()
        .find(|a| a.name == "web")
        .expect("web deployed");
    let client = w.client();
    let process = client.get_app_process(&web.guid, "web").await.unwrap();
    let stats = client.get_process_stats(&process.guid).await.unwrap();
    assert_eq!(stats.len(), instances as usize, "{stats:?}");
    w.sim.shutdown().await;
    wait
}

/// Requests of the health phase besides its polls: the start and the one read of the app's
/// processes.
const FIXED: u64 = 2;
/// The most requests one poll of a one-process app may send: its stats, and the crash
/// records when they are read (audit events, and log-cache when those do not answer or show a
/// crash).
const PER_POLL: u64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_wait_costs_the_same_requests_per_poll_at_2_and_100_instances() {
    for wait in [health_wait(2).await, health_wait(100).await] {
        // One stats read per process per poll, the same at 2 and at 100 instances.
        assert_eq!(wait.stats, wait.polls, "{wait:?}");
        assert_eq!(wait.per_instance, 0, "{wait:?}");
        // The whole health phase is bounded by the polls, not by the instances: one request
        // per instance would put 100 more here.
        assert!(
            wait.health <= FIXED + PER_POLL * wait.polls as u64,
            "{wait:?}: over {FIXED} + {PER_POLL} per poll"
        );
    }
}
