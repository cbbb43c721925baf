//! End-to-end: the blue-green push against the in-process simulator, under steady load
//! through its router. Every test asserts zero failed requests and the exact final state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cf_zero_downtime::command::demo;
use cf_zero_downtime::command::flags::DrainArg;
use cf_zero_downtime::command::push::PushArgs;
use cf_zero_downtime::deploy::OldApp;
use cf_zero_downtime::deploy::budget::Phase;
use cf_zero_downtime::deploy::{Event, Outcome, Reporter};
use cf_zero_downtime::sim::SimConfig;
use tokio_util::sync::CancellationToken;

use crate::support::cf_cli::{FORBIDDEN, methods, under_fake_cf_on_sim};
use crate::support::sim_world::{
    AppVersion, World, assert_no_failures, fast, push_args, requests_event, world,
};

/// What this file needs of the shared [`World`] beyond the harness: multi-app versions,
/// blue-green push arguments with a smoke test, and the state it compares.
trait BlueGreenWorld {
    /// Writes version `version` of `apps` (each in its own folder) and returns the manifest.
    fn version(&self, version: &str, apps: &[(&str, u32)], markers: &[(&str, &str)]) -> PathBuf;
    /// Push arguments for `manifest`, smoke-testing `/`.
    fn args(&self, manifest: &Path) -> PushArgs;
    /// Apps (name → guid, state) and routes (url → app names) of the space.
    async fn state(&self) -> State;
}

impl BlueGreenWorld for World {
    fn version(&self, version: &str, apps: &[(&str, u32)], markers: &[(&str, &str)]) -> PathBuf {
        let apps: Vec<AppVersion> = apps
            .iter()
            .map(|(name, instances)| {
                markers
                    .iter()
                    .filter(|(app, _)| app == name)
                    .fold(AppVersion::new(name, *instances), |a, (_, marker)| {
                        a.file(marker, "x")
                    })
            })
            .collect();
        self.write_version(version, &apps)
    }

    fn args(&self, manifest: &Path) -> PushArgs {
        {
            let mut args = push_args(manifest);
            args.common.smoke_test_path = Some("/".into());
            args
        }
    }

    async fn state(&self) -> State {
        let listing = self.listing().await;
        State {
            apps: listing
                .apps
                .iter()
                .map(|a| {
                    (
                        a.name.clone(),
                        (a.guid.as_str().to_string(), format!("{:?}", a.state)),
                    )
                })
                .collect(),
            routes: listing.route_table(ToString::to_string, false),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    apps: BTreeMap<String, (String, String)>,
    routes: BTreeMap<String, Vec<String>>,
}

impl State {
    fn app_names(&self) -> Vec<&str> {
        self.apps.keys().map(String::as_str).collect()
    }
}

/// The exact state after a successful deploy of `apps` (old apps deleted).
fn assert_deployed_state(s: &State, apps: &[&str], domain: &str) {
    assert_eq!(s.app_names(), apps.to_vec(), "{s:?}");
    let mut expected = BTreeMap::new();
    for a in apps {
        expected.insert(format!("{a}.{domain}"), vec![a.to_string()]);
    }
    assert_eq!(s.routes, expected, "routes: {s:?}");
    for (name, (_, state)) in &s.apps {
        assert_eq!(state, "Started", "{name}");
    }
}

async fn first_deploy(w: &World, apps: &[(&str, u32)]) -> State {
    let m = w.version("v1", apps, &[]);
    w.push_deployed(w.args(&m)).await;
    w.state().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_deploy_is_a_plain_push() {
    let w = world(fast()).await;
    let s = first_deploy(&w, &[("web", 2)]).await;
    assert_deployed_state(&s, &["web"], &w.sim.app_domain());
    assert_eq!(w.serving("web").await, "v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_swaps_under_load_without_a_failed_request() {
    let w = world(fast()).await;
    let before = first_deploy(&w, &[("web", 4)]).await;
    let load = w.load("web").await;
    let m = w.version("v2", &[("web", 4)], &[]);
    let (outcome, events) = w.push(w.args(&m)).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    w.settle().await;
    let report = load.stop().await;
    assert_no_failures(&report);
    assert!(report.served.contains_key("v1") && report.served.contains_key("v2"));
    let after = w.state().await;
    assert_deployed_state(&after, &["web"], &w.sim.app_domain());
    assert_ne!(
        after.apps["web"].0, before.apps["web"].0,
        "a new app serves"
    );
    assert_eq!(w.serving("web").await, "v2");
    // The last answers all come from v2.
    let last = report.timeline.last().unwrap();
    assert!(!last.served.contains_key("v1"), "{last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_second_route_propagation_loses_no_request() {
    let w = world(SimConfig {
        route_propagation: Duration::from_secs(1),
        stop_grace: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await;
    first_deploy(&w, &[("web", 2)]).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let load = w.load("web").await;
    let m = w.version("v2", &[("web", 2)], &[]);
    let mut args = w.args(&m);
    args.common.drain = DrainArg::fixed(Duration::from_millis(1500));
    let (outcome, events) = w.push(args).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let report = load.stop().await;
    assert_no_failures(&report);
    assert_deployed_state(&w.state().await, &["web"], &w.sim.app_domain());
    assert_eq!(w.serving("web").await, "v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_app_manifest_deploys_every_app() {
    let w = world(fast()).await;
    let apps = [("front", 2), ("back", 2)];
    first_deploy(&w, &apps).await;
    let (lf, lb) = (w.load("front").await, w.load("back").await);
    let m = w.version("v2", &apps, &[]);
    let (outcome, events) = w.push(w.args(&m)).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    w.settle().await;
    assert_no_failures(&lf.stop().await);
    assert_no_failures(&lb.stop().await);
    assert_deployed_state(&w.state().await, &["back", "front"], &w.sim.app_domain());
    assert_eq!(w.serving("front").await, "v2");
    assert_eq!(w.serving("back").await, "v2");
}

/// The apps whose `kind` step had started while another app's was under way.
fn overlapping(events: &[Event], kind: &str) -> Vec<String> {
    let mut open: Vec<String> = Vec::new();
    let mut overlapped = Vec::new();
    for e in events {
        match e {
            Event::StepStarted { kind: k, app, .. } if k == kind => {
                if !open.is_empty() {
                    overlapped.push(app.clone());
                }
                open.push(app.clone());
            }
            Event::StepFinished { kind: k, app, .. } if k == kind => open.retain(|a| a != app),
            _ => {}
        }
    }
    overlapped
}

/// A 4-app manifest under load on every app, `--parallel` at its default: the apps stage and
/// wait for their instances at the same time, every app switches, no request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_four_app_manifest_prepares_its_apps_at_the_same_time_without_a_failed_request() {
    let w = world(fast()).await;
    let apps = [("a1", 1), ("a2", 1), ("a3", 1), ("a4", 1)];
    first_deploy(&w, &apps).await;
    let mut loads = Vec::new();
    for (a, _) in apps {
        loads.push(w.load(a).await);
    }
    let m = w.version("v2", &apps, &[]);
    // Staggered: while one app stages, another waits for its instances.
    w.sim
        .faults()
        .slow_staging("a1-candidate", Duration::from_millis(600));
    w.sim
        .faults()
        .slow_start("a2-candidate", Duration::from_millis(600));
    w.sim.clear_call_log();
    let (outcome, events) = w.push(w.args(&m)).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let calls = w.sim.call_log();
    w.settle().await;
    for l in loads {
        assert_no_failures(&l.stop().await);
    }
    // Every request counts to the phase of the app's step that sent it, though the apps'
    // steps ran at the same time: the bits requests (package, upload, build, droplet and the
    // staging log) are the bits phase's, the route mappings the switch's.
    let requests = requests_event(&events);
    let count = |is: &dyn Fn(&str, &str) -> bool| {
        calls.iter().filter(|c| is(&c.method, &c.path)).count() as u64
    };
    let bits = count(&|m, p| {
        p.starts_with("/v3/packages")
            || p.starts_with("/v3/builds")
            || p == "/v3/resource_matches"
            || p.ends_with("/relationships/current_droplet")
            || (m == "GET" && p.starts_with("/api/v1/read/"))
    });
    let switch = count(&|_, p| p.contains("/destinations"));
    assert_eq!(requests.total, calls.len() as u64, "{requests}");
    assert_eq!(requests.of(Phase::Bits), bits, "{requests}");
    assert_eq!(requests.of(Phase::Switch), switch, "{requests}");
    assert_deployed_state(
        &w.state().await,
        &["a1", "a2", "a3", "a4"],
        &w.sim.app_domain(),
    );
    for (a, _) in apps {
        assert_eq!(w.serving(a).await, "v2", "{a}");
    }
    assert!(!overlapping(&events, "stage").is_empty(), "{events:#?}");
    assert!(
        !overlapping(&events, "wait_healthy").is_empty(),
        "{events:#?}"
    );
    // The switch stays app after app.
    let maps = events
        .iter()
        .filter(|e| matches!(e, Event::StepStarted { kind, .. } if kind == "map_route"))
        .count();
    assert_eq!(maps, 4);
    assert!(overlapping(&events, "map_route").is_empty());
    assert!(overlapping(&events, "unmap_route").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_app_failure_rolls_every_app_back() {
    let w = world(fast()).await;
    let apps = [("front", 1), ("back", 1)];
    let before = first_deploy(&w, &apps).await;
    let (lf, lb) = (w.load("front").await, w.load("back").await);
    // `back` v2 crashes on start: `front` must not switch either.
    let m = w.version("v2", &apps, &[("back", ".sim-crash")]);
    let (outcome, events) = w.push(w.args(&m)).await;
    assert!(
        matches!(outcome, Outcome::RolledBack { .. }),
        "{outcome:?} {events:#?}"
    );
    w.settle().await;
    assert_no_failures(&lf.stop().await);
    assert_no_failures(&lb.stop().await);
    assert_eq!(w.state().await, before);
    assert_eq!(w.serving("front").await, "v1");
    assert_eq!(w.serving("back").await, "v1");
}

/// A v2 deploy that fails in the way `markers`/`args` say must roll back to exactly `before`.
async fn expect_rollback(w: &World, before: &State, args: PushArgs) {
    let load = w.load("web").await;
    let (outcome, events) = w.push(args).await;
    assert!(
        matches!(outcome, Outcome::RolledBack { .. }),
        "{outcome:?} {events:#?}"
    );
    w.settle().await;
    assert_no_failures(&load.stop().await);
    assert_eq!(&w.state().await, before);
    assert_eq!(w.serving("web").await, "v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_staging_rolls_back() {
    let w = world(fast()).await;
    let before = first_deploy(&w, &[("web", 2)]).await;
    let m = w.version("v2", &[("web", 2)], &[("web", ".sim-fail-staging")]);
    expect_rollback(&w, &before, w.args(&m)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_instances_roll_back() {
    let w = world(fast()).await;
    let before = first_deploy(&w, &[("web", 2)]).await;
    let m = w.version("v2", &[("web", 2)], &[("web", ".sim-crash")]);
    expect_rollback(&w, &before, w.args(&m)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_smoke_tests_roll_back() {
    let w = world(fast()).await;
    let before = first_deploy(&w, &[("web", 2)]).await;
    let m = w.version("v2", &[("web", 2)], &[]);
    let mut args = w.args(&m);
    args.common.smoke_test_path = Some("/no-such-page".into());
    expect_rollback(&w, &before, args).await;
    let mut args = w.args(&m);
    args.common.smoke_test = Some("test \"$CF_ZDT_URL\" = never".into());
    expect_rollback(&w, &before, args).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_changes_nothing() {
    let w = world(fast()).await;
    let before = first_deploy(&w, &[("web", 2)]).await;
    w.sim.clear_call_log();
    let m = w.version("v2", &[("web", 2)], &[]);
    let mut args = w.args(&m);
    args.common.dry_run = true;
    let (outcome, events) = w.push(args).await;
    assert_eq!(outcome, Outcome::DryRun, "{events:#?}");
    let changing = w.changing_calls();
    assert!(changing.is_empty(), "{changing:?}");
    assert_eq!(w.state().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_app_stop_and_keep_leave_an_unrouted_venerable() {
    for (mode, state) in [(OldApp::Stop, "Stopped"), (OldApp::Keep, "Started")] {
        let w = world(fast()).await;
        let before = first_deploy(&w, &[("web", 1)]).await;
        let m = w.version("v2", &[("web", 1)], &[]);
        let mut args = w.args(&m);
        args.old_app = mode;
        let (outcome, events) = w.push(args).await;
        assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
        let after = w.state().await;
        assert_eq!(after.app_names(), vec!["web", "web-venerable"]);
        assert_eq!(after.apps["web-venerable"].0, before.apps["web"].0);
        assert_eq!(after.apps["web-venerable"].1, state);
        assert_eq!(
            after.routes,
            BTreeMap::from([(
                format!("web.{}", w.sim.app_domain()),
                vec!["web".to_string()]
            )])
        );
        // The next deploy replaces the venerable app and leaves the same shape.
        let m = w.version("v3", &[("web", 1)], &[]);
        let mut args = w.args(&m);
        args.old_app = mode;
        let (outcome, events) = w.push(args).await;
        assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
        assert_eq!(w.state().await.app_names(), vec!["web", "web-venerable"]);
        assert_eq!(w.serving("web").await, "v3");
    }
}

/// The mutating calls of a normal v2 deploy, as (method, path pattern, occurrence).
async fn mutating_calls_of_a_deploy() -> Vec<(String, String, u32)> {
    let w = world(fast()).await;
    first_deploy(&w, &[("web", 2)]).await;
    w.sim.clear_call_log();
    let m = w.version("v2", &[("web", 2)], &[]);
    let (outcome, _) = w.push(w.args(&m)).await;
    assert_eq!(outcome, Outcome::Deployed);
    let mut seen: BTreeMap<(String, String), u32> = BTreeMap::new();
    w.sim
        .call_log()
        .into_iter()
        .filter(|c| c.method != "GET" && c.path.starts_with("/v3/"))
        .map(|c| {
            let pattern = c
                .path
                .split('/')
                .map(|seg| if looks_like_guid(seg) { "*" } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            let n = seen.entry((c.method.clone(), pattern.clone())).or_default();
            *n += 1;
            (c.method, pattern, *n)
        })
        .collect()
}

fn looks_like_guid(seg: &str) -> bool {
    seg.len() >= 32 && seg.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_error_at_every_mutating_call_rolls_back_or_deploys_cleanly() {
    let calls = mutating_calls_of_a_deploy().await;
    assert!(calls.len() >= 8, "{calls:?}");
    let mut rolled_back = 0;
    for (method, pattern, nth) in &calls {
        let w = world(fast()).await;
        let before = first_deploy(&w, &[("web", 2)]).await;
        // A 422 is final (a 500 before anything was applied is now read back and sent again,
        // and most deploys would simply go on): every call's failure path is walked.
        w.sim.faults().fail_nth(method, pattern, *nth, 422);
        let load = w.load("web").await;
        let m = w.version("v2", &[("web", 2)], &[]);
        let (outcome, events) = w.push(w.args(&m)).await;
        w.settle().await;
        assert_no_failures(&load.stop().await);
        let ctx = format!("{method} {pattern} #{nth}: {outcome:?}");
        match &outcome {
            Outcome::RolledBack { .. } => {
                rolled_back += 1;
                assert_eq!(w.state().await, before, "{ctx}");
                assert_eq!(w.serving("web").await, "v1", "{ctx}");
            }
            // The lock's first mark is the first change: refused there, nothing changed.
            Outcome::NothingChanged { .. } if *method == "PATCH" && *nth == 1 => {
                assert_eq!(w.state().await, before, "{ctx}");
                assert_eq!(w.serving("web").await, "v1", "{ctx}");
            }
            Outcome::Deployed => {
                // After the switch a failed call is tried again: the exact deployed state.
                assert_deployed_state(&w.state().await, &["web"], &w.sim.app_domain());
                assert_eq!(w.serving("web").await, "v2", "{ctx}");
            }
            other => panic!("{ctx}: unexpected outcome {other:?} {events:#?}"),
        }
        w.sim.shutdown().await;
    }
    eprintln!(
        "single 422 at each of {} mutating calls: {rolled_back} rolled back, {} deployed cleanly",
        calls.len(),
        calls.len() - rolled_back
    );
    assert!(rolled_back >= 5, "most calls come before the switch");
}

/// Cancels the token when the `nth` step starts.
struct CancelAt {
    step: usize,
    cancel: CancellationToken,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Reporter for CancelAt {
    fn report(&mut self, event: Event) {
        if let Event::StepStarted { index, .. } = &event
            && *index == self.step
        {
            self.cancel.cancel();
        }
        self.events.lock().unwrap().push(event);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_at_every_step_ends_safely() {
    // The steps of a normal v2 deploy.
    let w = world(fast()).await;
    first_deploy(&w, &[("web", 2)]).await;
    let m = w.version("v2", &[("web", 2)], &[]);
    let (_, events) = w.push(w.args(&m)).await;
    let steps: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::StepStarted { kind, .. } => Some(kind.clone()),
            _ => None,
        })
        .collect();
    w.sim.shutdown().await;
    assert!(steps.len() >= 8, "{steps:?}");

    let mut rolled_back = 0;
    for (i, kind) in steps.iter().enumerate() {
        let w = world(fast()).await;
        let before = first_deploy(&w, &[("web", 2)]).await;
        let load = w.load("web").await;
        let m = w.version("v2", &[("web", 2)], &[]);
        let cancel = CancellationToken::new();
        let events = Arc::new(Mutex::new(Vec::new()));
        let mut rep = CancelAt {
            step: i,
            cancel: cancel.clone(),
            events: events.clone(),
        };
        let outcome = w.push_with(w.args(&m), &mut rep, &cancel).await;
        w.settle().await;
        assert_no_failures(&load.stop().await);
        let ctx = format!("interrupt at step {i} ({kind}): {outcome:?}");
        match &outcome {
            Outcome::RolledBack { .. } => {
                rolled_back += 1;
                assert_eq!(w.state().await, before, "{ctx}");
                assert_eq!(w.serving("web").await, "v1", "{ctx}");
            }
            Outcome::Deployed => {
                // After the switch an interrupt finishes the retire: one app, no temp route.
                assert_deployed_state(&w.state().await, &["web"], &w.sim.app_domain());
                assert_eq!(w.serving("web").await, "v2", "{ctx}");
                let m = w.version("v3", &[("web", 2)], &[]);
                let (outcome, _) = w.push(w.args(&m)).await;
                assert_eq!(outcome, Outcome::Deployed, "{ctx}");
                assert_deployed_state(&w.state().await, &["web"], &w.sim.app_domain());
            }
            other => panic!("{ctx}: {other:?} {:#?}", events.lock().unwrap()),
        }
        w.sim.shutdown().await;
    }
    assert!(rolled_back >= 5, "most steps come before the switch");
}

/// Forwards events to a channel so the test can kill the push at a chosen point.
struct Tap(tokio::sync::mpsc::UnboundedSender<Event>);

impl Reporter for Tap {
    fn report(&mut self, event: Event) {
        let _ = self.0.send(event);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_a_killed_run_are_cleaned_by_the_next_one() {
    // Killed (future dropped, no undo) after these steps finished.
    for kill_after in ["wait_healthy", "map_route"] {
        let w = world(fast()).await;
        first_deploy(&w, &[("web", 2)]).await;
        let load = w.load("web").await;
        let m = w.version("v2", &[("web", 2)], &[]);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tap = Tap(tx);
        let cancel = CancellationToken::new();
        {
            let run = w.push_with(w.args(&m), &mut tap, &cancel);
            tokio::pin!(run);
            loop {
                tokio::select! {
                    outcome = &mut run => panic!("the push ended before the kill: {outcome:?}"),
                    Some(ev) = rx.recv() => {
                        if matches!(&ev, Event::StepFinished { kind, .. } if kind == kill_after) {
                            break;
                        }
                    }
                }
            }
        }
        let mid = w.state().await;
        assert!(
            mid.apps.contains_key("web-candidate"),
            "a candidate is left: {mid:?}"
        );
        // The killed run's lock is fresh: the next run refuses at once and changes nothing.
        let m = w.version("v3", &[("web", 2)], &[]);
        let (outcome, _) = w.push(w.args(&m)).await;
        let Outcome::NothingChanged { error } = &outcome else {
            panic!("after {kill_after}: {outcome:?}")
        };
        assert!(
            error
                .to_string()
                .contains("another deploy of web is running"),
            "{error}"
        );
        assert_eq!(w.state().await, mid, "after {kill_after}");
        // Found later, its heartbeat is stale: the candidate is a leftover, cleaned up.
        let aged = w.age_locks().await;
        assert!(aged.contains(&"web-candidate".to_string()), "{aged:?}");
        let (outcome, events) = w.push(w.args(&m)).await;
        assert_eq!(
            outcome,
            Outcome::Deployed,
            "after {kill_after}: {events:#?}"
        );
        w.settle().await;
        assert_no_failures(&load.stop().await);
        assert_deployed_state(&w.state().await, &["web"], &w.sim.app_domain());
        assert_eq!(w.serving("web").await, "v3");
        w.sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrelated_app_with_the_candidate_name_is_never_touched() {
    let w = world(fast()).await;
    first_deploy(&w, &[("web", 1)]).await;
    // The user's own app that merely has the candidate's name.
    let m = w.version("mine", &[("web-candidate", 1)], &[]);
    let (outcome, _) = w.push(w.args(&m)).await;
    assert_eq!(outcome, Outcome::Deployed);
    let before = w.state().await;
    let m = w.version("v2", &[("web", 1)], &[]);
    let (outcome, events) = w.push(w.args(&m)).await;
    assert!(
        matches!(&outcome, Outcome::NothingChanged { error } if error.to_string().contains("web-candidate")),
        "{outcome:?} {events:#?}"
    );
    assert_eq!(w.state().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Go (apt-get install golang-go); run: cargo test --locked -- --include-ignored"]
async fn the_plugin_run_by_go_net_rpc_as_cf_runs_it_deploys_to_the_simulator() {
    let w = world(fast()).await;
    first_deploy(&w, &[("web", 2)]).await;
    let load = w.load("web").await;
    let m = w.version("v2", &[("web", 2)], &[]);
    let token = w.sim.token();
    let manifest = m.display().to_string();
    // Exactly as cf runs a plugin command: `<bin> <port> zero-downtime-push ARGS`.
    let report = under_fake_cf_on_sim(
        &w,
        &token,
        &[
            "zero-downtime-push",
            "web",
            "-f",
            &manifest,
            "--drain",
            "300ms",
        ],
    )
    .await;
    let Some(report) = report else {
        return; // not reached: the helper fails the test when Go is missing
    };
    let stdout = report["stdout"].as_str().unwrap_or_default().to_string();
    assert_eq!(report["exit_code"], 0, "{report}");
    assert!(stdout.trim_end().ends_with("deployed"), "{stdout}");
    assert!(
        !stdout.contains(token.trim_start_matches("bearer ")),
        "token leaked"
    );
    let methods = methods(&report);
    assert!(
        methods.iter().any(|m| m.ends_with("AccessToken")),
        "{methods:?}"
    );
    for m in &methods {
        assert!(
            !FORBIDDEN.iter().any(|f| m.ends_with(f)),
            "forbidden call {m}"
        );
    }
    w.settle().await;
    assert_no_failures(&load.stop().await);
    assert_deployed_state(&w.state().await, &["web"], &w.sim.app_domain());
    assert_eq!(w.serving("web").await, "v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_deploys_v2_under_load_without_a_failed_request() {
    for strategy in [
        cf_zero_downtime::deploy::Strategy::BlueGreen,
        cf_zero_downtime::deploy::Strategy::Rolling,
    ] {
        let args = demo::DemoArgs {
            instances: 2,
            propagation_ms: 50,
            staging_ms: 100,
            drain: Duration::from_millis(300),
            concurrency: 2,
            strategy,
            output: cf_zero_downtime::ui::OutputFormat::Json,
        };
        let report = demo::run_demo(&args, &CancellationToken::new(), |_| {})
            .await
            .expect("the demo runs");
        assert_eq!(report.first, Outcome::Deployed);
        assert_eq!(report.second, Outcome::Deployed, "{strategy:?}");
        assert_no_failures(&report.load);
        assert!(
            report.load.served.contains_key("v1"),
            "{:?}",
            report.load.served
        );
        assert!(
            report.load.served.contains_key("v2"),
            "{:?}",
            report.load.served
        );
        assert!(report.success());
        let text = demo::render_report(&report);
        assert!(
            text.contains("demo passed: v2 deployed with 0 failed requests"),
            "{text}"
        );
    }
}
