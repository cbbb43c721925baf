//! End-to-end: a production foundation on a bad day, on the simulator under load: a Diego
//! cell evacuation, a short Cloud Controller outage (503 `no_endpoints`, or reset
//! connections) at each phase and during a rollback, and bursts of 429s. Each ends clean with
//! 0 failed requests.

use std::time::{Duration, Instant};

use cf_zero_downtime::command::push::PushArgs;
use cf_zero_downtime::deploy::Strategy;
use cf_zero_downtime::deploy::{Event, Outcome};
use cf_zero_downtime::sim::SimConfig;

use crate::support::sim_world::{World, assert_no_failures, fast, push_args, world};

/// A world with v1 of `web` (2 instances) deployed.
async fn with_v1(cfg: SimConfig) -> World {
    let w = world(cfg).await;
    let m = w.web_version("v1", 2);
    w.push_deployed(push_args(&m)).await;
    w
}

fn notices(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Notice { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// The phases of a blue-green swap, each recognised by the first API call of the phase.
const PHASES: &[(&str, &str, &str)] = &[
    ("candidate", "POST", "/actions/apply_manifest"),
    ("upload", "POST", "/v3/packages"),
    ("staging", "POST", "/v3/builds"),
    ("health", "POST", "/actions/start"),
    ("drain", "DELETE", "/destinations/"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cell_evacuation_is_not_a_crash() {
    // Blue-green: the candidate and the live app are both moved while the candidate starts
    // (its health wait) and again during the drain; rolling: while the deployment runs.
    let cases: &[(Strategy, &str, &str, &[&str])] = &[
        (
            Strategy::BlueGreen,
            "POST",
            "/actions/start",
            &["web-candidate", "web"],
        ),
        (
            Strategy::BlueGreen,
            "DELETE",
            "/destinations/",
            &["web-candidate", "web"],
        ),
        (Strategy::Rolling, "POST", "/v3/deployments", &["web"]),
    ];
    for (strategy, method, part, apps) in cases {
        let w = with_v1(fast()).await;
        let load = w.load("web").await;
        let m = w.web_version("v2", 2);
        w.sim.clear_call_log();
        let args = PushArgs {
            strategy: *strategy,
            ..push_args(&m)
        };
        let health_wait = *strategy == Strategy::BlueGreen && *method == "POST";
        if health_wait {
            // The candidate's instances take a while to turn healthy: the move meets the
            // health wait, which must see the replaced instances and judge them moved.
            w.sim
                .faults()
                .slow_start("web-candidate", Duration::from_millis(1500));
        }
        let push = Box::pin(w.push(args));
        let evacuate = async {
            w.wait_for_call(method, part).await;
            if health_wait {
                // Let the health wait's polls see the first instances (it polls every 50 ms;
                // they start for 1.5 s), so that it meets their replacements.
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            for app in *apps {
                w.sim.faults().evacuate(app);
            }
        };
        let ((outcome, events), ()) = tokio::join!(push, evacuate);
        w.settle().await;
        let report = load.stop().await;
        let ctx = format!("{strategy:?} at {method} {part}: {outcome:?}");
        eprintln!(
            "evacuation {strategy:?} at {method} {part}: {outcome:?}; notices {:?}; {} requests",
            notices(&events),
            report.total
        );
        assert_no_failures(&report);
        assert_eq!(outcome, Outcome::Deployed, "{ctx} {events:#?}");
        assert_eq!(w.app_names().await, vec!["web".to_string()], "{ctx}");
        assert_eq!(w.serving("web").await, "v2", "{ctx}");
        if health_wait {
            let said = notices(&events);
            assert!(
                said.iter()
                    .any(|n| n.contains("moved to another cell") && n.contains("evacuated")),
                "{ctx}: {said:?}"
            );
        }
        w.sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_is_still_refused_at_once() {
    // The evacuation rules must not slow the crash verdict: a crash during the health wait
    // (a crash record exists) rolls back at once, on the crash, not at --timeout.
    let w = with_v1(fast()).await;
    let load = w.load("web").await;
    let m = w.web_version("v2", 2);
    w.sim.faults().crash_on_start("web-candidate");
    let (outcome, events) = w
        .push_bounded(
            {
                let mut args = push_args(&m);
                args.common.timeout = Duration::from_secs(120);
                args
            },
            Duration::from_secs(300),
        )
        .await;
    w.settle().await;
    assert_no_failures(&load.stop().await);
    eprintln!("crash-on-start: {outcome:?}");
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?} {events:#?}")
    };
    // The crash verdict ended the run, not the 120 s --timeout (its error: "no progress for").
    assert!(error.to_string().contains("crashed"), "{error}");
    assert!(!error.to_string().contains("no progress"), "{error}");
    assert_eq!(w.serving("web").await, "v1");
    w.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_api_outage_at_any_phase_is_waited_out() {
    for reset in [false, true] {
        for (phase, method, part) in PHASES {
            // Resets at three phases keep the run short (the upload: a POST whose answer is
            // lost, read back from the package's state); 503s at every one.
            if reset && !matches!(*phase, "upload" | "staging" | "drain") {
                continue;
            }
            let w = with_v1(fast()).await;
            let load = w.load("web").await;
            let m = w.web_version("v2", 2);
            w.sim.clear_call_log();
            let push = Box::pin(w.push(push_args(&m)));
            let outage = async {
                w.wait_for_call(method, part).await;
                w.sim.faults().outage(Duration::from_secs(4), reset);
            };
            let started = Instant::now();
            let ((outcome, events), ()) = tokio::join!(push, outage);
            let took = started.elapsed();
            w.settle().await;
            let report = load.stop().await;
            let mode = if reset { "resets" } else { "503 no_endpoints" };
            let ctx = format!("4 s outage ({mode}) at {phase}: {outcome:?}");
            eprintln!(
                "outage ({mode}) at {phase}: {outcome:?} after {took:?}; notices {:?}",
                notices(&events)
            );
            assert_no_failures(&report);
            assert_eq!(outcome, Outcome::Deployed, "{ctx} {events:#?}");
            assert_eq!(w.app_names().await, vec!["web".to_string()], "{ctx}");
            assert_eq!(w.serving("web").await, "v2", "{ctx}");
            let said = notices(&events);
            assert!(
                said.iter().any(|n| n.contains("waiting up to 60s")),
                "{ctx}: {said:?}"
            );
            w.sim.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_waits_out_an_outage_and_ends_complete() {
    let w = with_v1(fast()).await;
    let load = w.load("web").await;
    let m = w.web_version("v2", 2);
    w.sim.faults().fail_staging("web-candidate", None);
    w.sim.clear_call_log();
    let push = Box::pin(w.push(push_args(&m)));
    // The rollback's first delete meets a 4 s outage.
    let outage = async {
        w.wait_for_call("GET", "/v3/builds/").await;
        w.sim.faults().outage(Duration::from_secs(4), false);
    };
    let ((outcome, events), ()) = tokio::join!(push, outage);
    w.settle().await;
    assert_no_failures(&load.stop().await);
    eprintln!("rollback under an outage: {outcome:?}");
    assert!(
        matches!(outcome, Outcome::RolledBack { .. }),
        "{outcome:?} {events:#?}"
    );
    assert_eq!(w.app_names().await, vec!["web".to_string()]);
    assert_eq!(w.serving("web").await, "v1");
    w.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_of_429_deploy() {
    let w = with_v1(fast()).await;
    let load = w.load("web").await;
    let m = w.web_version("v2", 2);
    // Six 429s with Retry-After: 1 on the first reads, and six more once the candidate starts.
    w.sim.faults().rate_limit(6, 1);
    w.sim.clear_call_log();
    let push = Box::pin(w.push(push_args(&m)));
    let burst = async {
        w.wait_for_call("POST", "/actions/start").await;
        w.sim.faults().rate_limit(6, 1);
    };
    let started = Instant::now();
    let ((outcome, events), ()) = tokio::join!(push, burst);
    let took = started.elapsed();
    w.settle().await;
    assert_no_failures(&load.stop().await);
    eprintln!("429 bursts: {outcome:?} after {took:?}");
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let limited = w.sim.call_log().iter().filter(|c| c.status == 429).count();
    assert_eq!(limited, 12, "both bursts were met");
    assert_eq!(w.serving("web").await, "v2");
    w.sim.shutdown().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Go (apt-get install golang-go); run: cargo test --locked -- --include-ignored"]
async fn tokens_living_4s_are_refreshed_with_and_without_ctrl_c() {
    use crate::support::cf_cli::{CfLikePush, fakecf, push_cf_like};

    let Some(fakecf) = fakecf() else {
        return;
    };
    for interrupt in [false, true] {
        let w = with_v1(SimConfig {
            token_ttl: Duration::from_secs(4),
            ..fast()
        })
        .await;
        let load = w.load("web").await;
        let m = w.web_version("v2", 2);
        // The candidate takes 6 s to turn healthy: the run outlives its first token.
        w.sim
            .faults()
            .slow_start("web-candidate", Duration::from_secs(6));
        w.sim.clear_call_log();
        let CfLikePush { mut run, pid, .. } = push_cf_like(fakecf, &w, &m, "1s");
        if interrupt {
            // Ctrl-C once the first token has expired, during the health wait.
            w.wait_for_call("POST", "/actions/start").await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            run.interrupt();
        }
        let out = run
            .wait_plugin_exit(pid, Duration::from_secs(90))
            .expect("the plugin ended by itself");
        w.settle().await;
        assert_no_failures(&load.stop().await);
        let refreshed = w
            .sim
            .call_log()
            .iter()
            .filter(|c| c.path == "/oauth/token")
            .count();
        let last = out.stdout.trim_end().lines().last().unwrap_or_default();
        let ctx = format!("Ctrl-C {interrupt}: {out:?}");
        eprintln!("4 s tokens, Ctrl-C {interrupt}: '{last}', {refreshed} token refreshes");
        assert!(refreshed >= 1, "{ctx}");
        if interrupt {
            assert_eq!(last, "rolled back, the old version is serving", "{ctx}");
            assert_eq!(w.serving("web").await, "v1", "{ctx}");
        } else {
            assert_eq!(last, "deployed", "{ctx}");
            assert_eq!(w.serving("web").await, "v2", "{ctx}");
        }
        assert_eq!(w.app_names().await, vec!["web".to_string()], "{ctx}");
        w.sim.shutdown().await;
    }
}
