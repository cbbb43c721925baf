//! End-to-end: one deploy per app at a time, on the simulator under steady load through its
//! router (two pipelines pushing the same app).
//!
//! - Run A deploys v2 (its candidate slowed by a `SlowStart` fault so that it is mid-flight);
//!   run B for the same app starts while A runs: B refuses at once, naming A's run, and changes
//!   nothing; A deploys.
//! - A run killed after its health wait leaves its candidate with a fresh lock: the next run
//!   refuses. Once the lock is stale (its heartbeat aged), the next run cleans the candidate up
//!   as a leftover and deploys.
//! - With `--wait-for-lock`, B waits for A (saying so once) and deploys after it.
//!
//! Every one ends with no failed request. Every wait is bounded.

use std::cell::Cell;
use std::time::{Duration, Instant};

use cf_zero_downtime::cf::App;
use cf_zero_downtime::command::push::PushArgs;
use cf_zero_downtime::deploy::lock::{LOCK_ANNOTATIONS, RUN_ID_ANNOTATION};
use cf_zero_downtime::deploy::{Event, Outcome, Reporter};
use cf_zero_downtime::sim::FaultSpec;
use tokio_util::sync::CancellationToken;

use crate::support::sim_world::{World, assert_no_failures, fast, push_args, world};

/// `web` v1 deployed, and the candidates of later runs slowed by `slow_start_ms`.
async fn web_v1(slow_start_ms: u64) -> World {
    let w = world(fast()).await;
    let m = w.web_version("v1", 2);
    w.push_deployed(push_args(&m)).await;
    w.sim.faults().apply(FaultSpec::SlowStart {
        app: "web-candidate".into(),
        ms: slow_start_ms,
    });
    w
}

fn args(m: &std::path::Path) -> PushArgs {
    let mut args = push_args(m);
    args.common.smoke_test_path = Some("/health".into());
    args
}

/// The app named `name`, if any.
async fn app(w: &World, name: &str) -> Option<App> {
    w.listing().await.apps.into_iter().find(|a| a.name == name)
}

/// Waits (bounded) until `web-candidate` exists with a run's lock; returns it.
async fn locked_candidate(w: &World) -> App {
    let start = Instant::now();
    loop {
        if let Some(a) = app(w, "web-candidate").await
            && a.metadata.annotations.contains_key(RUN_ID_ANNOTATION)
        {
            return a;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the first run never created its candidate"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// No app of the space carries a lock annotation.
async fn assert_unlocked(w: &World) {
    for a in w.listing().await.apps {
        for k in LOCK_ANNOTATIONS {
            assert!(
                !a.metadata.annotations.contains_key(k),
                "{} keeps {k}: {:?}",
                a.name,
                a.metadata.annotations
            );
        }
    }
}

fn run_short(candidate: &App) -> String {
    let id = &candidate.metadata.annotations[RUN_ID_ANNOTATION];
    format!("(run {}…", &id[..8])
}

/// `POST /v3/apps` calls answered below 300 so far.
fn creates(w: &World) -> usize {
    w.sim
        .call_log()
        .iter()
        .filter(|c| c.method == "POST" && c.path == "/v3/apps" && c.status < 300)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_refuses_at_once_naming_the_first_which_deploys() {
    let w = web_v1(4000).await;
    let load = w.load("web").await;
    let creates_before = creates(&w);
    let (m2, m3) = (w.web_version("v2", 2), w.web_version("v3", 2));
    // Both runs are polled by this one task: a flag set when the first ends tells the second.
    let first_ended = Cell::new(false);
    let first = async {
        let r = w.push(args(&m2)).await;
        first_ended.set(true);
        r
    };
    let second = async {
        let cand = locked_candidate(&w).await;
        let r = w.push(args(&m3)).await;
        (cand, r, first_ended.get())
    };
    let ((a, a_events), (cand, (b, b_events), first_ended_before_second)) =
        tokio::join!(first, second);
    assert_eq!(a, Outcome::Deployed, "{a_events:#?}");
    let Outcome::NothingChanged { error } = &b else {
        panic!("{b:?} {b_events:#?}")
    };
    assert!(
        error
            .to_string()
            .starts_with("another deploy of web is running: started by "),
        "{error}"
    );
    assert!(error.to_string().contains(&run_short(&cand)), "{error}");
    assert!(
        !first_ended_before_second,
        "the second run ended while the first still ran"
    );
    // The second run created nothing; the first run's candidate is the app that now serves.
    assert_eq!(creates(&w) - creates_before, 1);
    assert_eq!(app(&w, "web").await.unwrap().guid, cand.guid);
    w.settle().await;
    assert_eq!(w.serving("web").await, "v2");
    assert_unlocked(&w).await;
    let report = load.stop().await;
    assert_no_failures(&report);
    eprintln!(
        "second run refused: {error}\nload: {} requests, {} failed, served {:?}",
        report.total, report.failed, report.served
    );
    w.sim.shutdown().await;
}

/// Forwards events to a channel so the test can kill the push at a chosen point.
struct Tap(tokio::sync::mpsc::UnboundedSender<Event>);

impl Reporter for Tap {
    fn report(&mut self, event: Event) {
        // The receiver is dropped once the kill point is seen.
        let _ignored = self.0.send(event);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_runs_candidate_is_refused_while_fresh_and_healed_once_stale() {
    let w = web_v1(0).await;
    let load = w.load("web").await;
    let m2 = w.web_version("v2", 2);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tap = Tap(tx);
    let cancel = CancellationToken::new();
    {
        // Killed (future dropped: no undo, no release) once its candidate is healthy.
        let run = w.push_with(args(&m2), &mut tap, &cancel);
        tokio::pin!(run);
        let bound = tokio::time::sleep(Duration::from_secs(60));
        tokio::pin!(bound);
        loop {
            tokio::select! {
                outcome = &mut run => panic!("the push ended before the kill: {outcome:?}"),
                () = &mut bound => panic!("the push never reached its health wait"),
                Some(ev) = rx.recv() => {
                    if matches!(&ev, Event::StepFinished { kind, .. } if kind == "wait_healthy") {
                        break;
                    }
                }
            }
        }
    }
    let left = app(&w, "web-candidate").await.expect("a candidate is left");
    let m3 = w.web_version("v3", 2);
    let (outcome, _) = w.push(args(&m3)).await;
    let Outcome::NothingChanged { error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(error.to_string().contains(&run_short(&left)), "{error}");
    assert_eq!(app(&w, "web-candidate").await.unwrap().guid, left.guid);

    // Found later (its heartbeat more than two minutes old), it is a leftover.
    let aged = w.age_locks().await;
    assert!(aged.contains(&"web-candidate".to_string()), "{aged:?}");
    let (outcome, events) = w.push(args(&m3)).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    w.settle().await;
    assert_eq!(w.serving("web").await, "v3");
    // The leftover is gone: deleted first when it served only its temporary route, retired
    // after the switch when the killed run had mapped a production route to it already.
    let apps = w.listing().await.apps;
    let names: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, vec!["web"]);
    assert_ne!(apps[0].guid, left.guid);
    assert_unlocked(&w).await;
    let report = load.stop().await;
    assert_no_failures(&report);
    eprintln!(
        "fresh leftover refused: {error}\nload: {} requests, {} failed, served {:?}",
        report.total, report.failed, report.served
    );
    w.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_lock_waits_for_the_first_run_then_deploys() {
    let w = web_v1(3000).await;
    let load = w.load("web").await;
    let (m2, m3) = (w.web_version("v2", 2), w.web_version("v3", 2));
    // Both runs are polled by this one task: a flag set when the first ends tells the second.
    let first_ended = Cell::new(false);
    let first = async {
        let r = w.push(args(&m2)).await;
        first_ended.set(true);
        r
    };
    let second = async {
        locked_candidate(&w).await;
        let r = w
            .push({
                let mut args = args(&m3);
                args.common.wait_for_lock = Duration::from_secs(120);
                args
            })
            .await;
        (r, first_ended.get())
    };
    let ((a, a_events), ((b, b_events), first_ended_before_second)) = tokio::join!(first, second);
    assert_eq!(a, Outcome::Deployed, "{a_events:#?}");
    assert_eq!(b, Outcome::Deployed, "{b_events:#?}");
    assert!(
        first_ended_before_second,
        "the second run deployed before the first ended"
    );
    let waits: Vec<&String> = b_events
        .iter()
        .filter_map(|e| match e {
            Event::Warning { message, .. } if message.contains("(--wait-for-lock)") => {
                Some(message)
            }
            _ => None,
        })
        .collect();
    assert_eq!(waits.len(), 1, "said once: {b_events:#?}");
    assert!(
        waits[0].starts_with("another deploy of web is running")
            && waits[0].contains("waiting up to 2m for it to end"),
        "{}",
        waits[0]
    );
    w.settle().await;
    assert_eq!(w.serving("web").await, "v3");
    assert_unlocked(&w).await;
    let report = load.stop().await;
    assert_no_failures(&report);
    eprintln!(
        "second run waited and deployed\nload: {} requests, {} failed, served {:?}",
        report.total, report.failed, report.served
    );
    w.sim.shutdown().await;
}
