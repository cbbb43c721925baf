//! One deploy per app at a time, against `FakeCf`: a run that finds another run's fresh lock
//! on the app, its candidate or venerable refuses before any change and names it;
//! `--wait-for-lock` waits (bounded) instead; a stale lock is a leftover; the run's own marks
//! are created with the candidate, refreshed while it lasts and removed at its end whatever the
//! outcome; a candidate name taken by a racing run is never touched.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use cf_zero_downtime::deploy::api::{App, AppState, DeploymentState, DeploymentStrategy};
use cf_zero_downtime::deploy::event::{Event, Outcome, Reporter};
use cf_zero_downtime::deploy::request::DeployRequest;
use cf_zero_downtime::deploy::run;
use cf_zero_downtime::deploy::{OldApp, Strategy};
use tokio_util::sync::CancellationToken;

use crate::support::fake_cf::*;
use cf_zero_downtime::deploy::lock::{
    HEARTBEAT_ANNOTATION, LOCK_ANNOTATIONS, RUN_ID_ANNOTATION, RunLock,
};
use cf_zero_downtime::deploy::rollback;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The lock marks of another run by bob, whose last heartbeat is `age` seconds old.
fn bobs_marks(age: i64) -> BTreeMap<String, String> {
    RunLock::new("bob@other-host").annotations(now() - age)
}

/// Adds `web-candidate` (guid C), labelled as web's candidate, carrying `marks`, on the temp
/// route.
fn add_candidate(cf: &FakeCf, marks: BTreeMap<String, String>) {
    cf.add_app("C", "web-candidate", 2);
    cf.mark_role("C", "candidate", "web");
    cf.with_app("C", |a| a.app.annotations.extend(marks));
    cf.add_route("web-temp", &["C"]);
}

/// The apps that carry any lock annotation.
fn marked_apps(cf: &FakeCf) -> Vec<String> {
    cf.lock()
        .apps
        .values()
        .filter(|a| {
            LOCK_ANNOTATIONS
                .iter()
                .any(|k| a.app.annotations.contains_key(*k))
        })
        .map(|a| a.app.name.clone())
        .collect()
}

fn warnings(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Warning { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_run_refuses_while_another_run_holds_the_app_its_candidate_or_venerable() {
    for holder in ["web", "web-candidate", "web-venerable"] {
        let cf = world();
        match holder {
            "web" => cf.with_app("A", |a| a.app.annotations.extend(bobs_marks(4))),
            "web-candidate" => add_candidate(&cf, bobs_marks(4)),
            _ => {
                cf.add_app("V", "web-venerable", 1);
                cf.mark_role("V", "venerable", "web");
                cf.with_app("V", |a| a.app.annotations.extend(bobs_marks(4)));
            }
        }
        let before = cf.snapshot();
        let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
        let Outcome::NothingChanged { error } = &outcome else {
            panic!("{holder}: {outcome:?} {events:#?}")
        };
        assert!(
            error
                .to_string()
                .starts_with("another deploy of web is running: started by bob@other-host at "),
            "{holder}: {error}"
        );
        assert!(
            error.to_string().contains(", last heartbeat 4s ago)"),
            "{holder}: {error}"
        );
        assert!(
            error
                .to_string()
                .ends_with("; wait for it or pass --wait-for-lock 10m"),
            "{holder}: {error}"
        );
        assert_eq!(outcome.exit_code(), 1);
        assert!(
            cf.mutating_calls().is_empty(),
            "{holder}: {:?}",
            cf.mutating_calls()
        );
        assert_eq!(cf.snapshot(), before, "{holder}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_says_who_holds_the_app_too() {
    let cf = world();
    add_candidate(&cf, bobs_marks(30));
    let r = DeployRequest {
        dry_run: true,
        ..req()
    };
    let (outcome, _) = deploy(&cf, &r, &[spec("web")]).await;
    assert!(
        matches!(&outcome, Outcome::NothingChanged { error } if error.to_string().contains("bob@other-host")),
        "{outcome:?}"
    );
    assert!(cf.mutating_calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_stale_lock_is_a_leftover_and_is_cleaned_up() {
    // Bob's run stopped refreshing 10 minutes ago: its idle candidate is deleted first.
    let cf = world();
    add_candidate(&cf, bobs_marks(600));
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let calls = cf.mutating_calls();
    assert!(
        index_of(&calls, "delete_app C") < index_of(&calls, "create_app web-candidate"),
        "{calls:#?}"
    );
    assert_swapped(&cf);
    assert!(marked_apps(&cf).is_empty(), "{:?}", marked_apps(&cf));

    // Marks without a readable heartbeat are stale too.
    let cf = world();
    cf.with_app("A", |a| {
        a.app
            .annotations
            .insert(RUN_ID_ANNOTATION.into(), "0123456789abcdef".into());
        a.app
            .annotations
            .insert(HEARTBEAT_ANNOTATION.into(), "yesterday".into());
    });
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
}

/// A reporter that records, when a step of `kind` starts, the lock marks each app carries.
struct MarksAt<'a> {
    cf: &'a FakeCf,
    kind: &'static str,
    seen: BTreeMap<String, BTreeMap<String, String>>,
    events: Vec<Event>,
}

impl Reporter for MarksAt<'_> {
    fn report(&mut self, event: Event) {
        if matches!(&event, Event::StepStarted { kind, .. } if kind == self.kind) {
            self.seen = self
                .cf
                .lock()
                .apps
                .values()
                .map(|a| {
                    let marks = a
                        .app
                        .annotations
                        .iter()
                        .filter(|(k, _)| LOCK_ANNOTATIONS.contains(&k.as_str()))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    (a.app.name.clone(), marks)
                })
                .collect();
        }
        self.events.push(event);
    }
}

#[tokio::test(start_paused = true)]
async fn the_run_marks_the_live_app_and_its_candidate_and_unmarks_them_at_the_end() {
    for crash in [false, true] {
        let cf = world();
        cf.lock().crash_new_apps = crash;
        let mut rep = MarksAt {
            cf: &cf,
            kind: "wait_healthy",
            seen: BTreeMap::new(),
            events: Vec::new(),
        };
        let outcome = deploy_reporting(&cf, &req(), &[spec("web")], &mut rep).await;
        let (live, cand) = (&rep.seen["web"], &rep.seen["web-candidate"]);
        assert_eq!(live.len(), 4, "{:?}", rep.seen);
        assert_eq!(live[RUN_ID_ANNOTATION], cand[RUN_ID_ANNOTATION]);
        assert_eq!(
            live["zero-downtime.cf/run-by"], "alice@ci-host",
            "{:?}",
            rep.seen
        );
        assert!(rep.seen["backend"].is_empty(), "{:?}", rep.seen);
        if crash {
            assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome:?}");
        } else {
            assert_eq!(outcome, Outcome::Deployed);
        }
        assert!(
            marked_apps(&cf).is_empty(),
            "{crash}: {:?}",
            marked_apps(&cf)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_new_version_leaves_the_lock_with_its_rename_while_the_old_app_holds_it() {
    // When the old app is deleted, it still carries the run's marks (the lock holds until
    // the run is done with the app); the new version lost them with its rename, and the run's
    // end has nothing left to unmark.
    let cf = world();
    let mut rep = MarksAt {
        cf: &cf,
        kind: "delete_app",
        seen: BTreeMap::new(),
        events: Vec::new(),
    };
    let outcome = deploy_reporting(&cf, &req(), &[spec("web")], &mut rep).await;
    assert_eq!(outcome, Outcome::Deployed, "{:#?}", rep.events);
    assert_eq!(rep.seen["web-venerable"].len(), 4, "{:?}", rep.seen);
    assert!(rep.seen["web"].is_empty(), "{:?}", rep.seen);
    let new = cf.app_named("web").expect("the new version").app.guid;
    let calls = cf.calls();
    let rename = calls
        .iter()
        .position(|c| *c == format!("rename_app {new} web"))
        .expect("the rename");
    assert!(
        !calls[rename..]
            .iter()
            .any(|c| *c == format!("update_metadata {new}")),
        "{calls:#?}"
    );
    assert!(marked_apps(&cf).is_empty(), "{:?}", marked_apps(&cf));

    // With after-switch tasks, the new version keeps the marks until the run's end.
    let cf = world();
    let mut r = req();
    r.tasks.after_switch = vec!["migrate".into()];
    let mut rep = MarksAt {
        cf: &cf,
        kind: "run_task",
        seen: BTreeMap::new(),
        events: Vec::new(),
    };
    let outcome = deploy_reporting(&cf, &r, &[spec("web")], &mut rep).await;
    assert_eq!(outcome, Outcome::Deployed, "{:#?}", rep.events);
    assert_eq!(rep.seen["web"].len(), 4, "{:?}", rep.seen);
    assert!(marked_apps(&cf).is_empty(), "{:?}", marked_apps(&cf));
}

#[tokio::test(start_paused = true)]
async fn the_heartbeat_refreshes_the_marks_and_a_failed_refresh_does_not_stop_the_run() {
    let cf = world();
    // The candidate's instances take about a minute to start.
    cf.lock().starting_polls = 60;
    let fail_next_heartbeat = FailMetadataAt {
        cf: &cf,
        kind: "wait_healthy",
        events: Vec::new(),
    };
    let mut rep = fail_next_heartbeat;
    let outcome = deploy_reporting(&cf, &req(), &[spec("web")], &mut rep).await;
    assert_eq!(outcome, Outcome::Deployed, "{:#?}", rep.events);
    let beats = cf
        .calls()
        .iter()
        .filter(|c| c.starts_with("update_metadata A"))
        .count();
    // The mark and about six heartbeats (the venerable label rides on the rename).
    assert!(beats >= 6, "{beats}: {:#?}", cf.calls());
    let w = warnings(&rep.events);
    assert!(
        w.iter()
            .any(|m| m.starts_with("the deploy lock's heartbeat failed 1 time(s), last: 500")),
        "{w:#?}"
    );
    assert!(marked_apps(&cf).is_empty(), "{:?}", marked_apps(&cf));
}

/// A reporter that fails the next `update_metadata` (a heartbeat: no step changes metadata
/// during the health wait) when a step of `kind` starts.
struct FailMetadataAt<'a> {
    cf: &'a FakeCf,
    kind: &'static str,
    events: Vec<Event>,
}

impl Reporter for FailMetadataAt<'_> {
    fn report(&mut self, event: Event) {
        if matches!(&event, Event::StepStarted { kind, .. } if kind == self.kind) {
            let n = self
                .cf
                .lock()
                .counts
                .get("update_metadata")
                .copied()
                .unwrap_or(0);
            self.cf.fail("update_metadata", n + 1, When::Before);
        }
        self.events.push(event);
    }
}

#[tokio::test(start_paused = true)]
async fn wait_for_lock_waits_for_the_other_run_to_end_then_deploys() {
    let cf = world();
    add_candidate(&cf, bobs_marks(1));
    let r = DeployRequest {
        wait_for_lock: Duration::from_secs(600),
        ..req()
    };
    let started = tokio::time::Instant::now();
    // Bob's run ends after 42 s: its candidate and temp route are gone (its rollback, say).
    let bob = async {
        tokio::time::sleep(Duration::from_secs(42)).await;
        let mut s = cf.lock();
        s.apps.remove("C");
        s.routes.retain(|_, (r, _)| r.host != "web-temp");
    };
    let apps = [spec("web")];
    let ((outcome, events), ()) = tokio::join!(deploy(&cf, &r, &apps), bob);
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let waited: Vec<String> = warnings(&events)
        .into_iter()
        .filter(|m| m.contains("waiting up to 10m for it to end (--wait-for-lock)"))
        .collect();
    assert_eq!(waited.len(), 1, "said once: {events:#?}");
    assert!(waited[0].starts_with("another deploy of web is running: started by bob@other-host"));
    let first_change = cf.mutating_calls().first().cloned();
    assert_eq!(first_change.as_deref(), Some("update_metadata A"));
    assert!(started.elapsed() >= Duration::from_secs(42));
    assert_swapped(&cf);
}

#[tokio::test(start_paused = true)]
async fn wait_for_lock_is_bounded() {
    let cf = world();
    cf.with_app("A", |a| a.app.annotations.extend(bobs_marks(1)));
    let before = cf.snapshot();
    let r = DeployRequest {
        wait_for_lock: Duration::from_secs(30),
        ..req()
    };
    let started = tokio::time::Instant::now();
    let (outcome, events) = deploy(&cf, &r, &[spec("web")]).await;
    let Outcome::NothingChanged { error } = &outcome else {
        panic!("{outcome:?} {events:#?}")
    };
    assert!(
        error
            .to_string()
            .ends_with(", still after waiting 30s (--wait-for-lock); try again later"),
        "{error}"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(30) && elapsed < Duration::from_secs(36),
        "{elapsed:?}"
    );
    assert!(cf.mutating_calls().is_empty());
    assert_eq!(cf.snapshot(), before);
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_ends_the_wait_for_the_lock() {
    let cf = world();
    cf.with_app("A", |a| a.app.annotations.extend(bobs_marks(1)));
    let r = DeployRequest {
        wait_for_lock: Duration::from_secs(600),
        ..req()
    };
    let token = CancellationToken::new();
    let mut events: Vec<Event> = Vec::new();
    let stop = async {
        tokio::time::sleep(Duration::from_secs(12)).await;
        token.cancel();
    };
    let apps = [spec("web")];
    let (outcome, ()) = tokio::join!(run(&cf, &r, &apps, &mut events, &token), stop);
    assert_eq!(
        outcome,
        Outcome::NothingChanged {
            error: "interrupted".into()
        }
    );
    assert!(cf.mutating_calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_candidate_name_taken_by_a_racing_run_is_never_touched() {
    // Both runs looked before either changed anything; bob's creates the candidate first.
    let mut annotations = bobs_marks(0);
    annotations.insert("zero-downtime.cf/app".into(), "web".into());
    let bobs = App {
        guid: "BOB".into(),
        name: "web-candidate".into(),
        state: AppState::Stopped,
        labels: BTreeMap::from([("zero-downtime.cf/role".into(), "candidate".into())]),
        annotations,
    };
    let cf = world();
    cf.lock().create_race = Some(bobs.clone());
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?} {events:#?}")
    };
    assert!(
        error
            .to_string()
            .starts_with("another deploy of web is running: started by bob@other-host"),
        "{error}"
    );
    // Bob's candidate is untouched; this run's own changes (its temp route, the mark on the
    // live app) are gone.
    let calls = cf.mutating_calls();
    assert!(!calls.iter().any(|c| c.contains("BOB")), "{calls:#?}");
    assert_eq!(cf.lock().apps["BOB"].app, bobs);
    assert_eq!(marked_apps(&cf), vec!["web-candidate".to_string()]);
    assert_eq!(cf.route_apps("web-temp.example.com"), None);

    // Someone who left no lock (a plain cf push of that name): named, never touched either.
    let cf = world();
    let mut plain = bobs.clone();
    plain.labels.clear();
    plain.annotations.clear();
    cf.lock().create_race = Some(plain);
    let (outcome, _) = deploy(&cf, &req(), &[spec("web")]).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        error.to_string().contains(
            "'web-candidate' (guid BOB) was created by someone else while this deploy ran"
        ),
        "{error}"
    );
    assert!(!cf.mutating_calls().iter().any(|c| c.contains("BOB")));
}

#[tokio::test(start_paused = true)]
async fn a_lost_create_answer_is_found_by_the_run_id() {
    // The app is created but the answer is lost: the run finds its own app, creates no second.
    let cf = world();
    cf.fail("create_app", 1, When::After);
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let creates = cf
        .calls()
        .iter()
        .filter(|c| c.starts_with("create_app"))
        .count();
    assert_eq!(creates, 1);
    assert_swapped(&cf);
    assert!(marked_apps(&cf).is_empty());
}

#[tokio::test(start_paused = true)]
async fn rolling_refuses_while_the_app_has_an_active_deployment() {
    let cf = rolling_world();
    cf.lock().deployments.insert(
        "dep-other".into(),
        FDep {
            app: "A".into(),
            strategy: DeploymentStrategy::Rolling,
            state: DeploymentState::Deploying,
            previous: None,
            steps: 1,
            current: 1,
            paused_for: 0,
            done_steps: false,
            polls: 2,
            error: None,
        },
    );
    for strategy in [Strategy::Rolling, Strategy::Canary] {
        let (outcome, events) = deploy(&cf, &rolling_req(strategy), &[rolling_spec("web")]).await;
        let Outcome::NothingChanged { error } = &outcome else {
            panic!("{outcome:?} {events:#?}")
        };
        assert_eq!(
            error.to_string(),
            "app web has an active deployment (dep-other, ACTIVE/DEPLOYING) that this run did not start; wait for it or pass --wait-for-lock 10m"
        );
        assert!(cf.mutating_calls().is_empty());
    }
    // Once it is over, the deploy goes on.
    cf.lock().deployments.get_mut("dep-other").unwrap().state = DeploymentState::Deployed;
    let (outcome, events) =
        deploy(&cf, &rolling_req(Strategy::Rolling), &[rolling_spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert!(marked_apps(&cf).is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_rollback_command_respects_the_lock() {
    let cf = world();
    let mut r = req();
    r.old_app = OldApp::Stop;
    let (outcome, _) = deploy(&cf, &r, &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed);
    let ven = cf.app_named("web-venerable").unwrap().app.guid;
    cf.with_app(ven.as_str(), |a| a.app.annotations.extend(bobs_marks(3)));
    let n = cf.mutating_calls().len();
    let mut events: Vec<Event> = Vec::new();
    let outcome = rollback::run(&cf, &r, "web", &mut events, &CancellationToken::new()).await;
    let Outcome::NothingChanged { error } = &outcome else {
        panic!("{outcome:?} {events:#?}")
    };
    assert!(
        error
            .to_string()
            .starts_with("another deploy of web is running: started by bob@other-host"),
        "{error}"
    );
    assert_eq!(cf.mutating_calls().len(), n);

    // Without bob's marks the rollback runs, holding the lock while it does.
    cf.with_app(ven.as_str(), |a| {
        a.app
            .annotations
            .retain(|k, _| !LOCK_ANNOTATIONS.contains(&k.as_str()))
    });
    let outcome = rollback::run(&cf, &r, "web", &mut events, &CancellationToken::new()).await;
    assert_eq!(outcome, Outcome::Deployed);
    let marked: Vec<String> = cf.mutating_calls()[n..]
        .iter()
        .filter(|c| c.starts_with("update_metadata"))
        .cloned()
        .collect();
    assert!(marked.len() >= 2, "{marked:?}");
    assert!(marked_apps(&cf).is_empty(), "{:?}", marked_apps(&cf));
}
