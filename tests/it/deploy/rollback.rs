//! `zero-downtime-rollback` against `FakeCf`: the venerable kept by a push with
//! `--old-app stop` takes the routes and the name back; refusals change nothing; a failure at
//! any mutating call or an interrupt at any step ends in the state before the rollback or in
//! the rolled-back state, never in between.

use std::collections::{BTreeMap, BTreeSet};

use cf_zero_downtime::deploy::OldApp;
use cf_zero_downtime::deploy::api::{AppGuid, AppState};
use cf_zero_downtime::deploy::event::{Event, Outcome};
use cf_zero_downtime::deploy::request::DeployRequest;
use cf_zero_downtime::ui::JsonReporter;
use tokio_util::sync::CancellationToken;

use crate::support::fake_cf::*;
use cf_zero_downtime::deploy::rollback;

/// `world()` after a v2 push with `--old-app stop`: `web` is the new app (returned), serving
/// web.example.com; `web-venerable` is A, stopped and labelled.
async fn after_push_with_stop() -> (FakeCf, String) {
    let cf = world();
    let mut r = req();
    r.old_app = OldApp::Stop;
    let (outcome, events) = deploy(&cf, &r, &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let v2 = cf.app_named("web").unwrap().app.guid;
    (cf, v2.to_string())
}

fn rollback_req() -> DeployRequest {
    DeployRequest {
        old_app: OldApp::Stop,
        ..req()
    }
}

async fn roll_back(cf: &FakeCf, r: &DeployRequest) -> (Outcome, Vec<Event>) {
    let mut events: Vec<Event> = Vec::new();
    let outcome = rollback::run(cf, r, "web", &mut events, &CancellationToken::new()).await;
    (outcome, events)
}

const ROLE: &str = "zero-downtime.cf/role";

/// `web` is `serving` (started, unlabelled, alone on its route), `web-venerable` is `kept`
/// (stopped, labelled venerable for web); no candidate, no temp route.
fn assert_rolled_back(cf: &FakeCf, serving: &str, kept: &str) {
    let web = cf.app_named("web").expect("web");
    assert_eq!(web.app.guid, serving);
    assert_eq!(web.app.state, AppState::Started);
    assert!(!web.app.labels.contains_key(ROLE), "{:?}", web.app.labels);
    assert_eq!(
        cf.route_apps("web.example.com"),
        Some(BTreeSet::from([AppGuid::from(serving)]))
    );
    let ven = cf.app_named("web-venerable").expect("web-venerable");
    assert_eq!(ven.app.guid, kept);
    assert_eq!(ven.app.state, AppState::Stopped);
    assert_eq!(
        ven.app.labels.get(ROLE).map(String::as_str),
        Some("venerable")
    );
    assert_eq!(
        ven.app
            .annotations
            .get("zero-downtime.cf/app")
            .map(String::as_str),
        Some("web")
    );
    assert!(cf.app_named("web-candidate").is_none());
    assert_eq!(cf.route_apps("web-temp.example.com"), None);
}

#[tokio::test(start_paused = true)]
async fn rollback_restores_the_venerable_and_a_second_one_restores_the_rollback() {
    let (cf, v2) = after_push_with_stop().await;
    let calls_before = cf.calls().len();
    let (outcome, events) = roll_back(&cf, &rollback_req()).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert_rolled_back(&cf, "A", &v2);
    // The settings of A are its own again (they were never touched).
    let web = cf.app_named("web").unwrap();
    assert!(!web.ssh);
    assert_eq!(web.app.labels.get("team").map(String::as_str), Some("blue"));
    // No staging, no upload, no manifest: only routes, start/stop, names and labels.
    let calls: Vec<String> = cf.calls()[calls_before..].to_vec();
    for c in &calls {
        assert!(
            ![
                "apply_manifest",
                "create_package",
                "upload_bits",
                "create_build"
            ]
            .iter()
            .any(|m| c.starts_with(m)),
            "{c}"
        );
    }
    // Map before unmap, start before map; the names change hands after the switch.
    let r = cf.route_guid("web.example.com");
    let start = index_of(&calls, "start_app A");
    let map = index_of(&calls, &format!("add_destination {r} A"));
    let unmap = index_of(&calls, "remove_destination");
    let rename = index_of(&calls, "rename_app");
    let stop = index_of(&calls, &format!("stop_app {v2}"));
    assert!(
        start < map && map < unmap && unmap < rename && rename < stop,
        "{calls:#?}"
    );
    assert!(matches!(
        events.first(),
        Some(Event::Started { strategy, .. }) if strategy == "rollback"
    ));

    // Rolling back the rollback brings v2 back, and A is the venerable again.
    let (outcome, events) = roll_back(&cf, &rollback_req()).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert_rolled_back(&cf, &v2, "A");
}

#[tokio::test(start_paused = true)]
async fn refusals_change_nothing() {
    // No venerable.
    let cf = world();
    let before = cf.snapshot();
    let (outcome, _) = roll_back(&cf, &rollback_req()).await;
    assert!(
        matches!(&outcome, Outcome::NothingChanged { error } if error.to_string().contains("no previous version")),
        "{outcome:?}"
    );
    assert!(cf.mutating_calls().is_empty());
    assert_eq!(cf.snapshot(), before);

    // An app with the venerable name that we did not keep.
    cf.add_app("X", "web-venerable", 1);
    let before = cf.snapshot();
    let (outcome, _) = roll_back(&cf, &rollback_req()).await;
    assert!(
        matches!(&outcome, Outcome::NothingChanged { error } if error.to_string().contains("never touched")),
        "{outcome:?}"
    );
    assert!(cf.mutating_calls().is_empty());
    assert_eq!(cf.snapshot(), before);

    // A venerable of another app.
    let (cf, _) = after_push_with_stop().await;
    let n = cf.mutating_calls().len();
    let g = cf.app_named("web-venerable").unwrap().app.guid;
    cf.with_app(g.as_str(), |a| {
        a.app
            .annotations
            .insert("zero-downtime.cf/app".into(), "other".into());
    });
    let (outcome, _) = roll_back(&cf, &rollback_req()).await;
    assert!(
        matches!(outcome, Outcome::NothingChanged { .. }),
        "{outcome:?}"
    );
    assert_eq!(cf.mutating_calls().len(), n);

    // Someone else's app holds the candidate name the swap of names needs.
    let (cf, _) = after_push_with_stop().await;
    cf.add_app("Y", "web-candidate", 1);
    let before = cf.snapshot();
    let n = cf.mutating_calls().len();
    let (outcome, _) = roll_back(&cf, &rollback_req()).await;
    assert!(
        matches!(&outcome, Outcome::NothingChanged { error } if error.to_string().contains("web-candidate")),
        "{outcome:?}"
    );
    assert_eq!(cf.mutating_calls().len(), n);
    assert_eq!(cf.snapshot(), before);

    // No app at all.
    let cf = FakeCf::new();
    let (outcome, _) = roll_back(&cf, &rollback_req()).await;
    assert!(
        matches!(&outcome, Outcome::NothingChanged { error } if error.to_string().contains("not found")),
        "{outcome:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn dry_run_shows_the_plan_and_changes_nothing() {
    let (cf, _) = after_push_with_stop().await;
    let before = cf.snapshot();
    let n = cf.mutating_calls().len();
    let mut r = rollback_req();
    r.dry_run = true;
    let (outcome, events) = roll_back(&cf, &r).await;
    assert_eq!(outcome, Outcome::DryRun);
    assert_eq!(cf.mutating_calls().len(), n);
    assert_eq!(cf.snapshot(), before);
    let Some(Event::Plan { apps, steps, .. }) =
        events.iter().find(|e| matches!(e, Event::Plan { .. }))
    else {
        panic!("no plan: {events:#?}")
    };
    assert!(
        apps[0].contains("rollback to the previous version"),
        "{apps:?}"
    );
    assert!(
        steps
            .iter()
            .any(|s| s.contains("Bringing back web-venerable")),
        "{steps:?}"
    );
    assert!(
        steps
            .iter()
            .any(|s| s.contains("no rollback after this point")),
        "{steps:?}"
    );
    // JSON output renders the rollback's events.
    let mut out = Vec::new();
    {
        let mut json = JsonReporter::new(&mut out);
        rollback::run(&cf, &r, "web", &mut json, &CancellationToken::new()).await;
    }
    let text = String::from_utf8(out).unwrap();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect(line);
        assert!(v.get("event").is_some(), "{line}");
    }
    assert!(text.contains(r#""strategy":"rollback""#), "{text}");
    assert!(text.contains(r#""result":"dry_run""#), "{text}");
}

/// Every mutating call of a rollback fails once, before or after its effect: the state before
/// the rollback comes back exactly, or (after the switch, where steps are tried again) the
/// rollback finishes.
#[tokio::test(start_paused = true)]
async fn a_failure_at_every_mutating_call_rolls_back_or_finishes() {
    let (happy, _) = after_push_with_stop().await;
    let skip = happy.mutating_calls().len();
    let (o, _) = roll_back(&happy, &rollback_req()).await;
    assert_eq!(o, Outcome::Deployed);
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let mut cases = Vec::new();
    for c in &happy.mutating_calls()[skip..] {
        let m = c.split(' ').next().unwrap_or_default().to_string();
        let n = seen.entry(m.clone()).or_insert(0);
        *n += 1;
        cases.push((m, *n));
    }
    assert!(cases.len() >= 9, "{cases:?}");
    let (mut restored, mut finished) = (0, 0);
    for (method, n) in cases {
        for when in [When::Before, When::After] {
            let (cf, v2) = after_push_with_stop().await;
            let before = cf.snapshot();
            let offset = cf.lock().counts.get(&method).copied().unwrap_or(0);
            cf.fail(&method, offset + n, when);
            let (outcome, events) = roll_back(&cf, &rollback_req()).await;
            let ctx = format!("{method} #{n} {when:?}: {outcome:?}");
            match &outcome {
                Outcome::RolledBack { error } => {
                    restored += 1;
                    assert!(error.to_string().contains("injected failure"), "{ctx}");
                    assert_eq!(cf.snapshot(), before, "{ctx}\n{events:#?}");
                }
                Outcome::Deployed => {
                    finished += 1;
                    assert_rolled_back(&cf, "A", &v2);
                }
                Outcome::NothingChanged { error } => {
                    // Marking the apps as being rolled back (the lock) failed.
                    assert_eq!(method, "update_metadata", "{ctx}");
                    assert!(
                        error
                            .to_string()
                            .contains("marking the app as being deployed"),
                        "{ctx}"
                    );
                    assert_eq!(cf.snapshot(), before, "{ctx}\n{events:#?}");
                }
                other => panic!("unexpected outcome {other:?} for {ctx}\n{events:#?}"),
            }
        }
    }
    assert!(restored >= 4, "{restored}");
    assert!(finished >= 10, "{finished}");
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_at_every_step_rolls_back_before_the_switch_and_finishes_after() {
    let (happy, _) = after_push_with_stop().await;
    let (_, events) = roll_back(&happy, &rollback_req()).await;
    let kinds: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::StepStarted { kind, .. } => Some(kind.clone()),
            _ => None,
        })
        .collect();
    let commit = kinds.iter().position(|k| k == "drain").unwrap();
    for (i, kind) in kinds.iter().enumerate() {
        if kinds[..i].contains(kind) {
            continue; // CancelAt stops at the first step of a kind
        }
        let waits = ["wait_healthy", "drain"];
        let stops_at = if waits.contains(&kind.as_str()) {
            i
        } else {
            i + 1
        };
        let (cf, v2) = after_push_with_stop().await;
        let before = cf.snapshot();
        let token = CancellationToken::new();
        let mut rep = CancelAt {
            kind: kind.clone(),
            token: token.clone(),
            events: Vec::new(),
        };
        let outcome = rollback::run(&cf, &rollback_req(), "web", &mut rep, &token).await;
        if stops_at >= commit {
            assert_eq!(outcome, Outcome::Deployed, "{kind}");
            assert_rolled_back(&cf, "A", &v2);
        } else {
            // Before any change (the reinstate reads nothing) it is "nothing changed".
            assert!(
                matches!(&outcome, Outcome::RolledBack { error } | Outcome::NothingChanged { error } if error.to_string().starts_with("interrupted")),
                "{kind}: {outcome:?}"
            );
            assert_eq!(cf.snapshot(), before, "{kind}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_venerable_that_crashes_on_start_is_stopped_again() {
    let (cf, v2) = after_push_with_stop().await;
    let (outcome, _) = roll_back(&cf, &rollback_req()).await;
    assert_eq!(outcome, Outcome::Deployed);
    // Now v2 (a guid the fake crashes) is the venerable: bringing it back fails.
    cf.lock().crash_new_apps = true;
    let before = cf.snapshot();
    let (outcome, events) = roll_back(&cf, &rollback_req()).await;
    assert!(
        matches!(&outcome, Outcome::RolledBack { error } if error.to_string().contains("crashed")),
        "{outcome:?} {events:#?}"
    );
    assert_eq!(cf.snapshot(), before);
    assert!(
        undo_descriptions(&events)
            .iter()
            .any(|d| d == "stop app web-venerable again"),
        "{events:#?}"
    );
    assert_rolled_back(&cf, "A", &v2);
}

#[tokio::test(start_paused = true)]
async fn current_app_keep_and_delete() {
    let (cf, v2) = after_push_with_stop().await;
    let mut r = rollback_req();
    r.old_app = OldApp::Keep;
    let (outcome, _) = roll_back(&cf, &r).await;
    assert_eq!(outcome, Outcome::Deployed);
    let ven = cf.app_named("web-venerable").unwrap();
    assert_eq!(
        (ven.app.guid.as_str(), ven.app.state),
        (v2.as_str(), AppState::Started)
    );
    assert_eq!(
        cf.route_apps("web.example.com"),
        Some(BTreeSet::from([AppGuid::from("A")]))
    );
    // A running venerable is not started again, only waited for.
    let n = cf.calls().len();
    r.old_app = OldApp::Delete;
    let (outcome, _) = roll_back(&cf, &r).await;
    assert_eq!(outcome, Outcome::Deployed);
    assert!(!cf.calls()[n..].iter().any(|c| c.starts_with("start_app")));
    assert_eq!(cf.app_named("web").unwrap().app.guid, v2);
    assert!(cf.app_named("web-venerable").is_none());
    assert!(!cf.lock().apps.contains_key("A"));
}
