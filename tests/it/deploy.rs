//! Executor tests of the blue-green deploy against `FakeCf`, an in-memory Cloud Controller
//! implementing `CfApi` with fault injection (fail the Nth call of a method, before or after its
//! effect), failing staging, crashing or slow instances.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cf_zero_downtime::deploy::api::{AppGuid, AppState, DeploymentState, Destination, TaskState};
use cf_zero_downtime::deploy::event::{Event, Outcome, Reporter};
use cf_zero_downtime::deploy::request::{
    AppSpec, DeployRequest, ProbeConfig, RouteSpec, TaskRequest,
};
use cf_zero_downtime::deploy::{Interrupt, run};
use cf_zero_downtime::deploy::{OldApp, Strategy};
use cf_zero_downtime::ui::{JsonReporter, TextReporter};
use tokio_util::sync::CancellationToken;

use crate::support::fake_cf::*;

/// `zero-downtime-rollback` on this fake.
mod rollback;

/// The quota check and `--strategy auto` on this fake.
mod quota;

/// One deploy per app at a time (the run lock) on this fake.
mod lock;

// ---- tests ----------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn swap_replaces_the_live_app_and_carries_its_state_over() {
    let cf = world();
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let g = assert_swapped(&cf);
    assert!(!cf.lock().apps.contains_key("A"), "old app deleted");
    let web = cf.app_named("web").unwrap();
    assert!(!web.ssh, "SSH setting carried over");
    assert_eq!(web.app.labels.get("team").map(String::as_str), Some("blue"));
    assert_eq!(
        web.app.annotations.get("owner").map(String::as_str),
        Some("ops")
    );
    let pol = cf.lock().policies.clone();
    assert!(
        pol.iter()
            .any(|p| p.source_app == *g && p.destination_app == "B")
    );
    assert!(
        pol.iter()
            .any(|p| p.source_app == "B" && p.destination_app == *g)
    );

    // Order: map the new app before unmapping the old; then the new version takes the name
    // (the old app moved out of the way first) before anything is stopped or deleted.
    let calls = cf.mutating_calls();
    let r = cf.route_guid("web.example.com");
    let map = index_of(&calls, &format!("add_destination {r} {g}"));
    let unmap = index_of(&calls, &format!("remove_destination {r} dest-{r}-A"));
    // The old app's venerable label rides on its rename (the updates of A are the lock's
    // marks and heartbeats), after the unmap. The delete stops it: no stop of its own.
    let rename_old = index_of(&calls, "rename_app A web-venerable");
    let rename = index_of(&calls, &format!("rename_app {g} web"));
    let temp = index_of(&calls, "delete_route");
    let delete = index_of(&calls, "delete_app A");
    assert!(
        !calls.iter().any(|c| c.starts_with("stop_app A")),
        "{calls:#?}"
    );
    assert!(
        map < unmap && unmap < rename_old && rename_old < rename && rename < temp && temp < delete,
        "{calls:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::UploadProgress { sent: 1024, .. }))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Waiting { what, .. } if what == "drain"))
    );
    assert!(matches!(
        events.last(),
        Some(Event::Finished {
            outcome: Outcome::Deployed,
            ..
        })
    ));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::StepFinished { kind, warnings, .. }
        if kind == "apply_manifest" && warnings == &vec!["manifest applied".to_string()]))
    );
}

#[tokio::test(start_paused = true)]
async fn first_deploy_is_a_plain_push_without_candidate() {
    let cf = FakeCf::new();
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let web = cf.app_named("web").unwrap();
    assert_eq!(web.app.state, AppState::Started);
    assert_eq!(
        cf.route_apps("web.example.com"),
        Some(BTreeSet::from([web.app.guid]))
    );
    assert!(
        !cf.mutating_calls()
            .iter()
            .any(|c| c.contains("candidate") || c.contains("temp"))
    );
    assert!(
        !cf.mutating_calls()
            .iter()
            .any(|c| c.starts_with("delete_") || c.starts_with("stop_"))
    );
}

/// The `find_domain`, `default_domain` and `list_destinations` reads of the fake's call log.
fn domain_reads(cf: &FakeCf) -> Vec<String> {
    cf.calls()
        .into_iter()
        .filter(|c| {
            c.starts_with("find_domain")
                || c.starts_with("default_domain")
                || c.starts_with("list_destinations")
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_live_apps_routes_carry_their_destinations_and_domains() {
    // The manifest's route is mapped to the live app: its domain and destinations come with
    // the app's routes, nothing is looked up.
    let cf = world();
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert_eq!(domain_reads(&cf), Vec::<String>::new());

    // A manifest route the live app does not have: its whole name is looked up as a domain
    // (it might be one); its parent is known from the live app's routes.
    let cf = world();
    let mut s = spec("web");
    s.routes = RouteSpec::Routes(vec!["web.example.com".into(), "shop.example.com".into()]);
    let (outcome, events) = deploy(&cf, &req(), &[s]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert_eq!(domain_reads(&cf), vec!["find_domain shop.example.com"]);

    // The default route needs the org's default domain, read once.
    let cf = world();
    let mut s = spec("web");
    s.routes = RouteSpec::Default;
    let (outcome, events) = deploy(&cf, &req(), &[s]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert_eq!(domain_reads(&cf), vec!["default_domain "]);
}

#[tokio::test(start_paused = true)]
async fn an_existing_temp_route_is_found_by_its_create_and_reused_or_refused() {
    // Nothing mapped to it: taken as it is (its create said it exists), never deleted by a
    // rollback, and removed by the retire as a created one would be.
    let cf = world();
    cf.add_route("web-temp", &[]);
    let temp = cf.route_guid("web-temp.example.com");
    cf.lock().crash_new_apps = true;
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    assert!(matches!(outcome, Outcome::RolledBack { .. }), "{events:#?}");
    assert_eq!(cf.route_guid("web-temp.example.com"), temp);
    assert!(
        !undo_descriptions(&events)
            .iter()
            .any(|d| d.contains("web-temp")),
        "{events:#?}"
    );
    cf.lock().crash_new_apps = false;
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert_swapped(&cf);
    assert_eq!(cf.route_apps("web-temp.example.com"), None);
    assert!(
        cf.calls()
            .iter()
            .any(|c| c == &format!("delete_route {temp}")),
        "{:#?}",
        cf.calls()
    );

    // Mapped to an app that is not ours: refused, the live app untouched, the route kept.
    let cf = world();
    cf.add_route("web-temp", &["B"]);
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?} {events:#?}")
    };
    assert!(
        error
            .to_string()
            .contains("is mapped to another app (guid B)"),
        "{error}"
    );
    assert_eq!(
        cf.route_apps("web-temp.example.com"),
        Some(BTreeSet::from([AppGuid::from("B")]))
    );
    assert_eq!(
        cf.route_apps("web.example.com"),
        Some(BTreeSet::from([AppGuid::from("A")]))
    );
    assert!(cf.app_named("web-candidate").is_none());
}

#[tokio::test(start_paused = true)]
async fn dry_run_changes_nothing() {
    let cf = world();
    let before = cf.snapshot();
    let mut r = req();
    r.dry_run = true;
    let (outcome, events) = deploy(&cf, &r, &[spec("web")]).await;
    assert_eq!(outcome, Outcome::DryRun);
    assert_eq!(outcome.exit_code(), 0);
    assert!(cf.mutating_calls().is_empty());
    assert_eq!(cf.snapshot(), before);
    let Some(Event::Plan {
        steps,
        dry_run: true,
        ..
    }) = events.iter().find(|e| matches!(e, Event::Plan { .. }))
    else {
        panic!("no plan event")
    };
    assert!(
        steps
            .iter()
            .any(|s| s.contains("Mapping route web.example.com"))
    );
}

/// Every mutating call of a happy swap fails once, before or after its effect: before the
/// switch the start state comes back exactly; after it the new version serves and the
/// leftovers are named.
#[tokio::test(start_paused = true)]
async fn a_failure_at_every_mutating_call_rolls_back_or_names_leftovers() {
    let happy = world();
    let (o, _) = deploy(&happy, &req(), &[spec("web")]).await;
    assert_eq!(o, Outcome::Deployed);
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let mut cases = Vec::new();
    for c in happy.mutating_calls() {
        let m = c.split(' ').next().unwrap_or_default().to_string();
        let n = seen.entry(m.clone()).or_insert(0);
        *n += 1;
        cases.push((m, *n));
    }
    // One failed call anywhere ends in exactly one of three clean states: nothing changed
    // (marking the live app as being deployed failed: the world as before), rolled back (the
    // world as before) or deployed (after the switch, steps are tried again).
    let (mut rolled_back, mut deployed) = (0, 0);
    for (method, n) in cases {
        for when in [When::Before, When::After] {
            let cf = world();
            let before = cf.snapshot();
            cf.fail(&method, n, when);
            let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
            let ctx = format!("{method} #{n} {when:?}: {outcome:?}");
            match &outcome {
                Outcome::RolledBack { error } => {
                    rolled_back += 1;
                    assert!(error.to_string().contains("injected failure"), "{ctx}");
                    assert_eq!(cf.snapshot(), before, "{ctx}\n{events:#?}");
                    assert_eq!(outcome.exit_code(), 1, "{ctx}");
                }
                Outcome::NothingChanged { error } => {
                    assert_eq!((method.as_str(), n), ("update_metadata", 1), "{ctx}");
                    assert!(
                        error
                            .to_string()
                            .contains("marking the app as being deployed"),
                        "{ctx}"
                    );
                    assert_eq!(cf.snapshot(), before, "{ctx}\n{events:#?}");
                }
                Outcome::Deployed => {
                    deployed += 1;
                    assert_swapped(&cf);
                    assert!(!cf.lock().apps.contains_key("A"), "{ctx}");
                    assert!(cf.app_named("web-candidate").is_none(), "{ctx}");
                    assert_eq!(cf.route_apps("web-temp.example.com"), None, "{ctx}");
                    assert_eq!(outcome.exit_code(), 0, "{ctx}");
                }
                other => panic!("unexpected outcome {other:?} for {ctx}"),
            }
        }
    }
    assert!(rolled_back >= 20, "{rolled_back}");
    assert!(deployed >= 8, "{deployed}");
}

#[tokio::test(start_paused = true)]
async fn undos_run_in_reverse_order() {
    let cf = world();
    cf.fail("add_destination", 1, When::Before);
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome:?}");
    assert_eq!(
        undo_descriptions(&events),
        vec![
            "delete 2 network policies",
            "delete app web-candidate",
            "delete route web-temp.example.com"
        ]
    );
    assert_eq!(
        outcome.last_line(),
        "rolled back, the old version is serving"
    );

    // After the switch a failed step is tried again.
    let cf = world();
    cf.fail("stop_app", 1, When::Before);
    let mut r = req();
    r.drain = Duration::ZERO;
    let (outcome, _) = deploy(&cf, &r, &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed);

    // A failure while unmapping maps the old app back too: the world is as before.
    let cf = world();
    let before = cf.snapshot();
    cf.fail("remove_destination", 1, When::Before);
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome:?}");
    assert_eq!(
        undo_descriptions(&events)[0],
        "map route web.example.com back to web"
    );
    assert_eq!(cf.snapshot(), before);
}

#[tokio::test(start_paused = true)]
async fn a_failing_undo_ends_in_rollback_incomplete_with_manual_steps() {
    let cf = world();
    cf.fail("add_destination", 1, When::Before);
    cf.fail("delete_app", 1, When::Before);
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    let Outcome::RollbackIncomplete { manual_steps, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        manual_steps,
        &vec!["cf delete web-candidate -f".to_string()]
    );
    assert_eq!(
        outcome.last_line(),
        "ROLLBACK INCOMPLETE: cf delete web-candidate -f"
    );
    assert_eq!(outcome.exit_code(), 1);
    // The remaining undos still ran.
    assert_eq!(cf.route_apps("web-temp.example.com"), None);
    assert!(events.iter().any(
        |e| matches!(e, Event::UndoFailed { manual, .. } if manual == "cf delete web-candidate -f")
    ));
    // The live app was never touched.
    assert_eq!(
        cf.route_apps("web.example.com"),
        Some(BTreeSet::from([AppGuid::from("A")]))
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_after_the_switch_names_the_exact_leftovers() {
    // A step after the switch that keeps failing (first try and both retries): the new
    // version already owns the name; what is left is named, and the exit status says so.
    let cf = world();
    for n in 1..=3 {
        cf.fail("delete_route", n, When::Before);
    }
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    let Outcome::DeployedWithLeftovers { leftovers, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        leftovers,
        &vec![
            "cf delete-route example.com --hostname web-temp -f".to_string(),
            "cf delete web-venerable -f".to_string(),
        ]
    );
    assert_eq!(outcome.exit_code(), 1);
    assert!(outcome.last_line().contains("cf delete web-venerable -f"));
    let web = cf.app_named("web").expect("the new version owns the name");
    assert_ne!(web.app.guid, "A");
    let old = cf
        .app_named("web-venerable")
        .expect("the old app, labelled");
    assert_eq!(
        old.app
            .labels
            .get("zero-downtime.cf/role")
            .map(String::as_str),
        Some("venerable")
    );
    let retries = events
        .iter()
        .filter(|e| matches!(e, Event::Warning { message, .. } if message.contains("trying again")))
        .count();
    assert_eq!(retries, 2);

    // The next deploy removes the labelled venerable.
    let (outcome, _) = deploy(&cf, &req(), &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed);
    assert!(cf.app_named("web-venerable").is_none());
    assert!(!cf.lock().apps.contains_key("A"));
}

#[tokio::test(start_paused = true)]
async fn staging_failure_and_crashes_roll_back_with_the_reason() {
    let cf = world();
    let before = cf.snapshot();
    cf.lock().staging_fails_for = Some("web".into());
    let (outcome, _) = deploy(&cf, &req(), &[spec("web")]).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        error
            .to_string()
            .contains("staging app 'web' failed: NoAppDetectedError"),
        "{error}"
    );
    assert_eq!(cf.snapshot(), before);

    let cf = world();
    cf.lock().crash_new_apps = true;
    let (outcome, _) = deploy(&cf, &req(), &[spec("web")]).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        error
            .to_string()
            .contains("instance 0 of process 'web' crashed: exit status 1 (out of memory)"),
        "{error}"
    );
    assert!(
        error.hint.as_deref()
            == Some(
                "TIP: the failed app is deleted by the rollback; watch 'cf logs web-candidate' in another terminal during the next push"
            ),
        "{error}"
    );
    assert_eq!(cf.snapshot(), before);
}

#[tokio::test(start_paused = true)]
async fn instances_that_stall_time_out_and_slow_ones_do_not() {
    let cf = world();
    cf.lock().starting_polls = 10_000;
    let before = cf.snapshot();
    let (outcome, _) = deploy(&cf, &req(), &[spec("web")]).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        error
            .to_string()
            .contains("0 of 2 instances running, no progress for 1m"),
        "{error}"
    );
    assert_eq!(cf.snapshot(), before);

    let cf = world();
    cf.lock().starting_polls = 5;
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed);
    assert!(events.iter().any(
        |e| matches!(e, Event::Waiting { detail, .. } if detail == "0 of 2 instances running")
    ));
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_at_each_phase_rolls_back_before_the_switch() {
    let happy = world();
    let (_, events) = deploy(&happy, &req(), &[spec("web")]).await;
    let kinds: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::StepStarted { kind, .. } => Some(kind.clone()),
            _ => None,
        })
        .collect();
    let commit = kinds.iter().position(|k| k == "drain").unwrap();
    for (i, kind) in kinds.iter().enumerate() {
        // Waits stop at once; a mutating step runs to its end and the next boundary stops.
        let waits = ["stage", "wait_healthy", "smoke_test", "drain"];
        let stops_at = if waits.contains(&kind.as_str()) {
            i
        } else {
            i + 1
        };
        let cf = world();
        let before = cf.snapshot();
        let token = CancellationToken::new();
        let mut rep = CancelAt {
            kind: kind.clone(),
            token: token.clone(),
            events: Vec::new(),
        };
        let outcome = run(&cf, &req(), &[spec("web")], &mut rep, &token).await;
        if stops_at >= kinds.len() || stops_at >= commit {
            // After the switch an interrupt finishes the retire (the drain included).
            assert_eq!(outcome, Outcome::Deployed, "{kind}");
            assert_swapped(&cf);
            assert!(!cf.lock().apps.contains_key("A"), "{kind}");
            if stops_at >= commit && stops_at < kinds.len() {
                assert!(
                    rep.events.iter().any(|e| matches!(e, Event::Warning { message, .. } if message.starts_with("interrupted after the switch"))),
                    "{kind}"
                );
            }
        } else {
            assert!(
                matches!(&outcome, Outcome::RolledBack { error } if error.to_string().starts_with("interrupted")),
                "{kind}: {outcome:?}"
            );
            assert_eq!(cf.snapshot(), before, "{kind}");
        }
    }
}

/// A reporter that interrupts twice (stop, then abandon) when a step of the given kind
/// starts, or when the rollback reaches its first undo.
struct AbandonAt {
    kind: &'static str,
    interrupt: Interrupt,
    events: Vec<Event>,
}

impl Reporter for AbandonAt {
    fn report(&mut self, event: Event) {
        let hit = match &event {
            Event::StepStarted { kind, .. } => kind == self.kind,
            Event::UndoStarted { .. } => self.kind == "undo",
            _ => false,
        };
        if hit {
            self.interrupt.abandon();
        }
        self.events.push(event);
    }
}

#[tokio::test(start_paused = true)]
async fn a_second_interrupt_stops_waiting_and_names_what_is_left() {
    // During the drain: the new version serves; the retire is left, named, exit status 1.
    let cf = world();
    let mut rep = AbandonAt {
        kind: "drain",
        interrupt: Interrupt::new(),
        events: Vec::new(),
    };
    let i = rep.interrupt.clone();
    let outcome = run(&cf, &req(), &[spec("web")], &mut rep, &i).await;
    let Outcome::DeployedWithLeftovers { leftovers, error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(error.to_string().contains("stopped waiting"), "{error}");
    assert_eq!(
        leftovers,
        &vec![
            "cf rename web web-venerable && cf set-label app web-venerable zero-downtime.cf/role=venerable".to_string(),
            "cf rename web-candidate web && cf unset-label app web zero-downtime.cf/role".to_string(),
            "cf delete-route example.com --hostname web-temp -f".to_string(),
            "cf delete web-venerable -f".to_string(),
        ]
    );
    assert_eq!(outcome.exit_code(), 1);

    // During the rollback: the undos left are listed for the user, none is run.
    let cf = world();
    cf.lock().crash_new_apps = true;
    let mut rep = AbandonAt {
        kind: "undo",
        interrupt: Interrupt::new(),
        events: Vec::new(),
    };
    let i = rep.interrupt.clone();
    let outcome = run(&cf, &req(), &[spec("web")], &mut rep, &i).await;
    let Outcome::RollbackIncomplete { manual_steps, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        manual_steps
            .iter()
            .any(|m| m.starts_with("cf delete web-candidate -f")),
        "{manual_steps:?}"
    );
    assert!(
        manual_steps
            .iter()
            .any(|m| m.starts_with("cf delete-route example.com --hostname web-temp")),
        "{manual_steps:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_crash_that_polling_never_sees_fails_within_one_poll() {
    // Diego restarted the instance before each poll: STARTING with a new instance GUID.
    for (shows, forbidden, expect) in [
        (CrashShows::Restarted, false, "crashed"),
        (CrashShows::Restarted, true, "restarted between two polls"),
        (CrashShows::RecordsOnly, false, "health check timed out"),
    ] {
        let cf = world();
        let before = cf.snapshot();
        {
            let mut s = cf.lock();
            s.crash_new_apps = true;
            s.crash_shows = shows;
            s.crash_records_forbidden = forbidden;
        }
        let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
        let ctx = format!("{shows:?} forbidden={forbidden}: {outcome:?}");
        let Outcome::RolledBack { error } = &outcome else {
            panic!("{ctx}")
        };
        assert!(error.to_string().contains(expect), "{ctx}");
        assert!(error.to_string().contains("crashed"), "{ctx}");
        assert_eq!(cf.snapshot(), before, "{ctx}");
        // Refused within a poll or two of the first crash, not at --timeout.
        let waits = events
            .iter()
            .filter(|e| matches!(e, Event::Waiting { what, .. } if what == "instances"))
            .count();
        assert!(waits <= 2, "{ctx}: {waits} waits");
        let gaps = events
            .iter()
            .filter(|e| matches!(e, Event::Warning { message, .. } if message.starts_with("crash records")))
            .count();
        assert_eq!(gaps, usize::from(forbidden), "{ctx}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_policy_server_that_refuses_or_is_absent_degrades_to_a_warning() {
    for status in [403, 404] {
        let cf = world();
        cf.lock().policies_status = Some(status);
        let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
        assert_eq!(outcome, Outcome::Deployed, "{status}: {events:#?}");
        assert_swapped(&cf);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Warning { message, .. }
                if message.starts_with("network policies of app 'web' cannot be read")
                    && message.contains("not carried over"))),
            "{status}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_before_the_first_step_changes_nothing() {
    let cf = world();
    let token = CancellationToken::new();
    token.cancel();
    let mut events: Vec<Event> = Vec::new();
    let outcome = run(&cf, &req(), &[spec("web")], &mut events, &token).await;
    assert!(
        matches!(outcome, Outcome::NothingChanged { .. }),
        "{outcome:?}"
    );
    assert_eq!(outcome.last_line(), "nothing was changed");
    assert!(cf.mutating_calls().is_empty());
}

fn two_apps() -> FakeCf {
    let cf = world();
    cf.add_app("C", "api", 1);
    cf.add_route("api", &["C"]);
    cf
}

#[tokio::test(start_paused = true)]
async fn multi_app_deploys_all_or_nothing() {
    let cf = two_apps();
    let (outcome, events) = deploy(&cf, &req(), &[spec("web"), spec("api")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert_swapped(&cf);
    assert_ne!(cf.app_named("api").unwrap().app.guid, "C");

    // The second app fails staging: no route ever switched, both candidates removed.
    let cf = two_apps();
    let before = cf.snapshot();
    cf.lock().staging_fails_for = Some("api".into());
    let (outcome, _) = deploy(&cf, &req(), &[spec("web"), spec("api")]).await;
    assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome:?}");
    assert!(!cf.calls().iter().any(|c| c.starts_with("add_destination")));
    assert_eq!(cf.snapshot(), before);

    // The second app's unmap fails: the first app's switch is reverted too.
    let cf = two_apps();
    let before = cf.snapshot();
    cf.fail("remove_destination", 2, When::Before);
    let (outcome, _) = deploy(&cf, &req(), &[spec("web"), spec("api")]).await;
    assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome:?}");
    assert_eq!(cf.snapshot(), before);
}

fn parallel(n: usize) -> DeployRequest {
    DeployRequest {
        parallel: n,
        ..req()
    }
}

/// The plan indices of the steps in the order they started.
fn started_indices(events: &[Event]) -> Vec<usize> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::StepStarted { index, .. } => Some(*index),
            _ => None,
        })
        .collect()
}

/// `--parallel 4`: the second app's staging begins while the first app's build is still
/// being asked for (the fake holds every build until both were asked for); with
/// `--parallel 1` the same gate is never opened, so the first build fails and everything is
/// rolled back.
#[tokio::test(start_paused = true)]
async fn with_parallel_the_apps_stage_at_the_same_time() {
    let cf = two_apps();
    cf.lock().build_gate = Some(2);
    let (outcome, events) = deploy(&cf, &parallel(4), &[spec("web"), spec("api")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert_swapped(&cf);
    assert_ne!(cf.app_named("api").unwrap().app.guid, "C");
    let order = started_indices(&events);
    assert!(
        order.windows(2).any(|w| w[1] < w[0]),
        "steps of the two apps interleave: {order:?}"
    );

    let cf = two_apps();
    let before = cf.snapshot();
    cf.lock().build_gate = Some(2);
    let (outcome, _) = deploy(&cf, &parallel(1), &[spec("web"), spec("api")]).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(error.to_string().contains("build gate"), "{error}");
    assert_eq!(cf.snapshot(), before);
}

/// `--parallel 1` runs the steps in plan order, one after the other, as before `--parallel`.
#[tokio::test(start_paused = true)]
async fn parallel_one_keeps_the_plan_order() {
    let cf = two_apps();
    let (outcome, events) = deploy(&cf, &parallel(1), &[spec("web"), spec("api")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let order = started_indices(&events);
    let total = events
        .iter()
        .find_map(|e| match e {
            Event::StepStarted { total, .. } => Some(*total),
            _ => None,
        })
        .unwrap();
    assert_eq!(order, (0..total).collect::<Vec<_>>());
    // Every step of web's candidate before api's: the plan prepares app after app.
    let calls = cf.mutating_calls();
    let api = index_of(&calls, "create_app api-candidate");
    assert!(
        !calls[api..].iter().any(|c| c.starts_with("create_app web")),
        "{calls:#?}"
    );
}

/// The second app's build fails while the first app waits for its own: the first app's
/// wait ends at once (it says why), and every app is rolled back, the one in flight too.
#[tokio::test(start_paused = true)]
async fn a_failing_app_stops_the_apps_in_flight_and_everything_is_rolled_back() {
    let cf = two_apps();
    let before = cf.snapshot();
    cf.fail("create_build", 2, When::Before);
    let (outcome, events) = deploy(&cf, &parallel(4), &[spec("web"), spec("api")]).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        error
            .to_string()
            .contains("injected failure in create_build"),
        "{error}"
    );
    let calls = cf.mutating_calls();
    index_of(&calls, "create_app web-candidate");
    index_of(&calls, "create_app api-candidate");
    // The app that was waiting for its build stopped waiting, and says why.
    let stopped: Vec<(&str, &str)> = events
        .iter()
        .filter_map(|e| match e {
            Event::StepFailed {
                app, kind, error, ..
            } if error.starts_with("stopped") => Some((app.as_str(), kind.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(stopped.len(), 1, "{events:#?}");
    assert_eq!(stopped[0].1, "stage");
    assert!(!cf.calls().iter().any(|c| c.starts_with("add_destination")));
    assert_eq!(
        cf.snapshot(),
        before,
        "both candidates and their routes are gone"
    );
}

/// An interrupt while both apps' candidates are under way rolls every app back.
#[tokio::test(start_paused = true)]
async fn an_interrupt_during_the_concurrent_prepare_rolls_every_app_back() {
    struct CancelAtApiStaging {
        token: CancellationToken,
        events: Vec<Event>,
    }
    impl Reporter for CancelAtApiStaging {
        fn report(&mut self, event: Event) {
            if let Event::StepStarted { kind, app, .. } = &event
                && kind == "stage"
                && app == "api"
            {
                self.token.cancel();
            }
            self.events.push(event);
        }
    }
    let cf = two_apps();
    let before = cf.snapshot();
    let token = CancellationToken::new();
    let mut r = CancelAtApiStaging {
        token: token.clone(),
        events: Vec::new(),
    };
    let outcome = run(
        &cf,
        &parallel(4),
        &[spec("web"), spec("api")],
        &mut r,
        &token,
    )
    .await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(error.to_string().contains("interrupted"), "{error}");
    let calls = cf.mutating_calls();
    index_of(&calls, "create_app web-candidate");
    index_of(&calls, "create_app api-candidate");
    assert!(!calls.iter().any(|c| c.starts_with("add_destination")));
    assert_eq!(cf.snapshot(), before);
}

/// After the switch the apps retire at the same time: one app's retire failing for good
/// leaves the other app's done, and the leftovers name every step of the failed app's
/// retire that did not run, and no step of the other app's.
#[tokio::test(start_paused = true)]
async fn a_failed_concurrent_retire_names_every_step_not_done() {
    let cf = two_apps();
    // web's rename of its old app fails on every try (the first call, then both retries after
    // api's retire ran in web's pause: calls 4 and 5).
    cf.fail("rename_app", 1, When::Before)
        .fail("rename_app", 4, When::Before)
        .fail("rename_app", 5, When::Before);
    let (outcome, events) = deploy(&cf, &parallel(4), &[spec("web"), spec("api")]).await;
    let Outcome::DeployedWithLeftovers { leftovers, .. } = &outcome else {
        panic!("{outcome:?} {events:#?}")
    };
    assert!(
        leftovers.iter().any(|l| l.contains("web-venerable")),
        "{leftovers:#?}"
    );
    assert!(
        leftovers
            .iter()
            .any(|l| l.starts_with("cf rename web-candidate web")),
        "{leftovers:#?}"
    );
    assert!(
        !leftovers.iter().any(|l| l.contains("api")),
        "{leftovers:#?}"
    );
    let api = cf.app_named("api").expect("api renamed");
    assert_ne!(api.app.guid, "C");
    assert!(cf.app_named("api-candidate").is_none());
    assert!(!cf.lock().apps.contains_key("C"), "api's old app retired");
}

#[tokio::test(start_paused = true)]
async fn leftovers_of_a_killed_run_are_cleaned_up_and_foreign_names_refused() {
    // A killed run left a candidate on the temp route.
    let cf = world();
    cf.add_app("L", "web-candidate", 1);
    cf.mark_role("L", "candidate", "web");
    cf.add_route("web-temp", &["L"]);
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert!(!cf.lock().apps.contains_key("L"));
    assert_swapped(&cf);

    // A killed run after the switch: the candidate serves production next to the live app.
    let cf = world();
    cf.add_app("L", "web-candidate", 1);
    cf.mark_role("L", "candidate", "web");
    let web_route = cf
        .lock()
        .routes
        .values()
        .find(|(r, _)| r.url == "web.example.com")
        .unwrap()
        .0
        .guid
        .clone();
    cf.lock()
        .routes
        .get_mut(web_route.as_str())
        .unwrap()
        .1
        .push(Destination {
            guid: "dest-L".into(),
            app_guid: "L".into(),
            process_type: "web".into(),
            port: None,
            protocol: None,
        });
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert!(!cf.lock().apps.contains_key("L"));
    assert_swapped(&cf);

    // An app of the user's with the candidate name: clear error, nothing touched.
    let cf = world();
    cf.add_app("U", "web-candidate", 1);
    let (outcome, _) = deploy(&cf, &req(), &[spec("web")]).await;
    let Outcome::NothingChanged { error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        error.to_string().contains("'web-candidate'")
            && error
                .to_string()
                .contains("not created by cf-zero-downtime"),
        "{error}"
    );
    assert!(cf.mutating_calls().is_empty());

    // Ours, but labelled for another app: just as foreign.
    let cf = world();
    cf.add_app("V", "web-venerable", 1);
    cf.mark_role("V", "venerable", "other");
    let mut r = req();
    r.old_app = OldApp::Keep;
    let (outcome, _) = deploy(&cf, &r, &[spec("web")]).await;
    assert!(
        matches!(&outcome, Outcome::NothingChanged { error } if error.to_string().contains("'web-venerable'")),
        "{outcome:?}"
    );
    assert!(cf.mutating_calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn old_app_stop_keeps_a_labelled_venerable() {
    let cf = world();
    let mut r = req();
    r.old_app = OldApp::Stop;
    r.keep_scale = true;
    cf.with_app("A", |a| a.processes = vec![("web".into(), 5)]);
    let (outcome, _) = deploy(&cf, &r, &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed);
    assert_swapped(&cf);
    let v = cf.app_named("web-venerable").unwrap();
    assert_eq!(v.app.guid, "A");
    assert_eq!(v.app.state, AppState::Stopped);
    assert_eq!(
        v.app
            .labels
            .get("zero-downtime.cf/role")
            .map(String::as_str),
        Some("venerable")
    );
    assert_eq!(
        cf.app_named("web").unwrap().processes,
        vec![("web".to_string(), 5)]
    );

    // The next deploy replaces that venerable with the new old version.
    let (outcome, _) = deploy(&cf, &r, &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed);
    assert!(!cf.lock().apps.contains_key("A"));
    assert_ne!(cf.app_named("web-venerable").unwrap().app.guid, "A");
}

#[tokio::test]
async fn smoke_test_command_gates_the_switch() {
    let mut r = req();
    r.poll_interval = Duration::from_millis(1);
    r.drain = Duration::from_millis(1);
    r.smoke_test = Some("test \"$CF_ZDT_URL\" = https://web-temp.example.com && test".into());
    let cf = world();
    let (outcome, events) = deploy(&cf, &r, &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");

    r.smoke_test = Some("echo unhealthy >&2; exit 3".into());
    let cf = world();
    let before = cf.snapshot();
    let (outcome, _) = deploy(&cf, &r, &[spec("web")]).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        error
            .to_string()
            .contains("smoke test of app 'web' failed: command"),
        "{error}"
    );
    assert!(error.to_string().contains("status 3: unhealthy"), "{error}");
    assert!(!cf.calls().iter().any(|c| c.starts_with("add_destination")));
    assert_eq!(cf.snapshot(), before);
}

#[tokio::test(start_paused = true)]
async fn json_output_is_one_object_per_line_ending_with_the_outcome() {
    let cf = world();
    let mut rep = JsonReporter::new(Vec::new());
    let outcome = deploy_reporting(&cf, &req(), &[spec("web")], &mut rep).await;
    assert_eq!(outcome, Outcome::Deployed);
    let out = String::from_utf8(rep.into_inner()).unwrap();
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["event"], "started");
    assert_eq!(lines[0]["org"], "o");
    assert_eq!(lines[0]["strategy"], "blue-green");
    let last = lines.last().unwrap();
    assert_eq!(last["event"], "finished");
    assert_eq!(last["outcome"]["result"], "deployed");
    assert!(
        last["elapsed_ms"].as_u64().unwrap() >= 10_000,
        "the drain is included"
    );
    assert!(
        last["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["kind"] == "drain" && s["elapsed_ms"] == 10_000)
    );
    assert!(!lines.iter().any(|l| l["event"] == "step_failed"));
    assert!(!out.contains("bearer"));
}

#[tokio::test(start_paused = true)]
async fn text_output_ends_with_the_outcome_line() {
    let cf = world();
    cf.fail("add_destination", 1, When::Before);
    let mut rep = TextReporter::plain(Vec::new());
    deploy_reporting(&cf, &req(), &[spec("web")], &mut rep).await;
    let out = String::from_utf8(rep.into_inner()).unwrap();
    assert!(
        out.starts_with("Pushing app web to org o / space s as alice...\nGetting app info...\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "FAILED: mapping route web.example.com to the new web (app web): 500 CF-ServerError"
        ),
        "{out}"
    );
    assert!(out.contains("[request id req-1]"), "{out}");
    assert_eq!(
        out.lines().last(),
        Some("rolled back, the old version is serving")
    );
}

#[tokio::test]
async fn built_in_probe_checks_the_candidate_on_the_temp_route() {
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/health"))
        .and(header("host", "web-temp.example.com"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let mut r = req();
    r.poll_interval = Duration::from_millis(1);
    r.drain = Duration::from_millis(1);
    r.smoke_test_path = Some("/health".into());
    r.probe = ProbeConfig {
        scheme: "http".into(),
        connect_to: Some(*server.address()),
        retry_interval: Duration::from_millis(1),
        attempts: 2,
        ..ProbeConfig::default()
    };
    let cf = world();
    let (outcome, events) = deploy(&cf, &r, &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");

    // A candidate that answers 503 is rolled back before any route switches.
    let bad = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .expect(2)
        .mount(&bad)
        .await;
    r.probe.connect_to = Some(*bad.address());
    let cf = world();
    let before = cf.snapshot();
    let (outcome, _) = deploy(&cf, &r, &[spec("web")]).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        error.to_string().contains(
            "GET http://web-temp.example.com/health did not answer 2xx after 2 attempts: status 503"
        ),
        "{error}"
    );
    assert_eq!(cf.snapshot(), before);
}

#[tokio::test(start_paused = true)]
async fn terminal_mode_keeps_progress_off_the_line_output() {
    let cf = world();
    let mut rep = TextReporter::terminal(Vec::new());
    let outcome = deploy_reporting(&cf, &req(), &[spec("web")], &mut rep).await;
    assert_eq!(outcome, Outcome::Deployed);
    let out = String::from_utf8(rep.into_inner()).unwrap();
    assert!(
        !out.contains("uploaded") && !out.contains("instances running"),
        "{out}"
    );
    assert_eq!(out.lines().last(), Some("deployed"));
}

#[tokio::test(start_paused = true)]
async fn a_failed_first_deploy_with_random_route_leaves_no_route_behind() {
    let mut sp = spec("web");
    sp.routes = RouteSpec::Random;
    let cf = FakeCf::new();
    let (outcome, _) = deploy(&cf, &req(), std::slice::from_ref(&sp)).await;
    assert_eq!(outcome, Outcome::Deployed);
    assert!(cf.route_apps("web-rnd.example.com").is_some());

    let cf = FakeCf::new();
    let before = cf.snapshot();
    cf.fail("start_app", 1, When::Before);
    let (outcome, events) = deploy(&cf, &req(), &[sp]).await;
    assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome:?}");
    assert_eq!(
        undo_descriptions(&events),
        vec!["delete app web and its route web-rnd.example.com"]
    );
    assert_eq!(cf.snapshot(), before);
}

#[tokio::test(start_paused = true)]
async fn a_new_app_next_to_a_swapped_one_is_removed_when_the_swap_fails() {
    let cf = world();
    let (outcome, events) = deploy(&cf, &req(), &[spec("web"), spec("fresh")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert_swapped(&cf);
    assert!(cf.app_named("fresh").is_some());
    assert!(cf.route_apps("fresh.example.com").is_some());

    let cf = world();
    let before = cf.snapshot();
    cf.fail("add_destination", 1, When::Before);
    let (outcome, _) = deploy(&cf, &req(), &[spec("web"), spec("fresh")]).await;
    assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome:?}");
    assert_eq!(
        cf.snapshot(),
        before,
        "the new app and its route are gone too"
    );
}

/// The deploy future can run on a multi-threaded runtime (plugin and standalone entry points).
#[test]
fn the_deploy_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let cf = world();
    let r = req();
    let apps = [spec("web")];
    let mut events: Vec<Event> = Vec::new();
    let token = CancellationToken::new();
    let fut = run(&cf, &r, &apps, &mut events, &token);
    assert_send(&fut);
}

/// A run killed after deleting the old app but before the rename: the labelled candidate is
/// the only app serving production. The next deploy treats it as the live app.
#[tokio::test(start_paused = true)]
async fn a_serving_candidate_without_live_app_is_replaced_like_a_live_app() {
    let cf = FakeCf::new();
    cf.add_app("L", "web-candidate", 2);
    cf.mark_role("L", "candidate", "web");
    cf.with_app("L", |a| a.app.labels.insert("team".into(), "blue".into()));
    cf.add_route("web", &["L"]);
    let (outcome, events) = deploy(&cf, &req(), &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert!(!cf.lock().apps.contains_key("L"));
    let g = assert_swapped(&cf);
    let web = cf.app_named("web").unwrap();
    assert_eq!(web.app.labels.get("team").map(String::as_str), Some("blue"));
    // It gave up the candidate name first, and served until the new version did.
    let calls = cf.mutating_calls();
    let r = cf.route_guid("web.example.com");
    assert!(index_of(&calls, "rename_app L web-leftover-L") < index_of(&calls, "apply_manifest"));
    assert!(
        index_of(&calls, &format!("add_destination {r} {g}"))
            < index_of(&calls, &format!("remove_destination {r} dest-{r}-L"))
    );
}

/// A run killed between labelling the old app as venerable and renaming it.
#[tokio::test(start_paused = true)]
async fn a_live_app_already_labelled_venerable_is_still_the_live_app() {
    let cf = world();
    cf.mark_role("A", "venerable", "web");
    let mut r = req();
    r.old_app = OldApp::Stop;
    let (outcome, events) = deploy(&cf, &r, &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert_swapped(&cf);
    assert_eq!(cf.app_named("web-venerable").unwrap().app.guid, "A");
}

/// Collects events and cancels the token at the first event `when` matches.
struct CancelWhen {
    events: Vec<Event>,
    token: CancellationToken,
    when: fn(&Event) -> bool,
}

impl Reporter for CancelWhen {
    fn report(&mut self, event: Event) {
        if (self.when)(&event) {
            self.token.cancel();
        }
        self.events.push(event);
    }
}

#[tokio::test(start_paused = true)]
async fn rolling_keeps_the_app_guid_and_deploys_the_new_droplet() {
    let cf = rolling_world();
    let (outcome, events) =
        deploy(&cf, &rolling_req(Strategy::Rolling), &[rolling_spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let web = cf.app_named("web").unwrap();
    assert_eq!(web.app.guid, "A", "same app, same GUID");
    assert!(
        web.droplet
            .as_deref()
            .unwrap()
            .starts_with("droplet-build-")
    );
    assert_eq!(deployment_states(&cf), vec![DeploymentState::Deployed]);
    assert_eq!(
        env_of(&cf, "A").get("GREETING").map(String::as_str),
        Some("v2")
    );
    assert_eq!(
        services_of(&cf, "A"),
        vec!["old-db".to_string(), "new-db".to_string()]
    );
    let calls = cf.mutating_calls();
    assert!(
        calls.iter().all(|c| !c.starts_with("delete_")
            && !c.starts_with("rename_")
            && !c.starts_with("cancel_")
            && !c.starts_with("set_current_droplet")
            && !c.starts_with("start_app")),
        "{calls:#?}"
    );
    // The env snapshot is read before the manifest changes it.
    let all = cf.calls();
    assert!(index_of(&all, "get_env_vars A") < index_of(&all, "apply_manifest"));
    assert!(index_of(&all, "create_build") < index_of(&all, "create_deployment A"));
    assert!(cf.app_named("web-candidate").is_none());
}

#[tokio::test(start_paused = true)]
async fn rolling_crash_cancels_at_once_and_restores_env_vars() {
    let cf = rolling_world();
    cf.lock()
        .new_instances
        .insert("A".into(), NewInstances::Crash);
    let droplet_before = cf.app_named("web").unwrap().droplet;
    let (outcome, events) =
        deploy(&cf, &rolling_req(Strategy::Rolling), &[rolling_spec("web")]).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?} {events:#?}");
    };
    assert!(error.to_string().contains("crashed"), "{error}");
    assert!(
        error
            .hint
            .as_deref()
            .is_some_and(|h| h.starts_with("TIP: the app keeps its GUID")),
        "{error}"
    );
    assert_eq!(deployment_states(&cf), vec![DeploymentState::Canceled]);
    assert_eq!(
        env_of(&cf, "A"),
        BTreeMap::from([("GREETING".to_string(), "v1".to_string())]),
        "env restored, added variable removed"
    );
    assert_eq!(
        services_of(&cf, "A"),
        vec!["old-db".to_string()],
        "new binding removed"
    );
    let web = cf.app_named("web").unwrap();
    assert_eq!(web.app.guid, "A");
    assert_eq!(web.droplet, droplet_before, "old droplet current again");
    // Canceled on the first look at the crash: one stats read of the new process.
    let stats = cf
        .calls()
        .iter()
        .filter(|c| c.starts_with("process_stats dep-"))
        .count();
    assert_eq!(stats, 1);
    assert_eq!(
        undo_descriptions(&events),
        vec![
            "cancel the deployment of app web (the old version serves again)".to_string(),
            "restore the environment variables and service bindings of app web".to_string(),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn rolling_stall_cancels_after_the_timeout_without_progress() {
    let cf = rolling_world();
    cf.lock()
        .new_instances
        .insert("A".into(), NewInstances::Stall);
    let (outcome, events) =
        deploy(&cf, &rolling_req(Strategy::Rolling), &[rolling_spec("web")]).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?} {events:#?}");
    };
    assert!(
        error.to_string().contains("made no progress for 5s"),
        "{error}"
    );
    assert!(
        error.to_string().contains("0 of 1 new instances running"),
        "{error}"
    );
    assert_eq!(deployment_states(&cf), vec![DeploymentState::Canceled]);
    assert_eq!(
        env_of(&cf, "A").get("GREETING").map(String::as_str),
        Some("v1")
    );
}

#[tokio::test(start_paused = true)]
async fn rolling_interrupt_cancels_the_deployment_and_restores_env_vars() {
    let cf = rolling_world();
    cf.lock()
        .new_instances
        .insert("A".into(), NewInstances::Stall);
    let token = CancellationToken::new();
    let mut r = CancelWhen {
        events: Vec::new(),
        token: token.clone(),
        when: |e| matches!(e, Event::Waiting { what, .. } if what == "deployment"),
    };
    let outcome = run(
        &cf,
        &rolling_req(Strategy::Rolling),
        &[rolling_spec("web")],
        &mut r,
        &token,
    )
    .await;
    assert_eq!(
        outcome,
        Outcome::RolledBack {
            error: "interrupted".into()
        },
        "{:#?}",
        r.events
    );
    assert_eq!(deployment_states(&cf), vec![DeploymentState::Canceled]);
    assert_eq!(
        env_of(&cf, "A").get("GREETING").map(String::as_str),
        Some("v1")
    );
    assert!(!env_of(&cf, "A").contains_key("ADDED"));
}

#[tokio::test(start_paused = true)]
async fn rolling_failing_cancel_is_reported_with_the_manual_command() {
    let cf = rolling_world();
    cf.lock()
        .new_instances
        .insert("A".into(), NewInstances::Crash);
    cf.fail("cancel_deployment", 1, When::Before);
    let (outcome, events) =
        deploy(&cf, &rolling_req(Strategy::Rolling), &[rolling_spec("web")]).await;
    let Outcome::RollbackIncomplete { manual_steps, .. } = &outcome else {
        panic!("{outcome:?} {events:#?}");
    };
    assert_eq!(manual_steps, &vec!["cf cancel-deployment web".to_string()]);
    // The env snapshot is still restored.
    assert_eq!(
        env_of(&cf, "A").get("GREETING").map(String::as_str),
        Some("v1")
    );
}

#[tokio::test]
async fn canary_runs_the_smoke_test_at_every_pause_then_continues() {
    let cf = rolling_world();
    let mut r = rolling_req(Strategy::Canary);
    r.instance_steps = vec![50, 100];
    // Passes only with the canary's process in the environment.
    r.smoke_test = Some("test -n \"$CF_ZDT_PROCESS_INSTANCE\" && true".into());
    let (outcome, events) = deploy(&cf, &r, &[rolling_spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let continues = cf
        .mutating_calls()
        .iter()
        .filter(|c| c.starts_with("continue_deployment"))
        .count();
    assert_eq!(continues, 2, "one continue per canary step");
    let smokes = events
        .iter()
        .filter(|e| {
            matches!(e, Event::Waiting { what, detail, .. }
            if what == "smoke_test" && detail.contains("CF_ZDT_PROCESS_INSTANCE=dep-"))
        })
        .count();
    assert_eq!(smokes, 2, "{events:#?}");
    assert_eq!(deployment_states(&cf), vec![DeploymentState::Deployed]);
    assert_eq!(cf.app_named("web").unwrap().app.guid, "A");
}

#[tokio::test]
async fn canary_with_a_failing_smoke_test_is_canceled_and_env_restored() {
    let cf = rolling_world();
    let mut r = rolling_req(Strategy::Canary);
    r.smoke_test = Some("false".into());
    let (outcome, events) = deploy(&cf, &r, &[rolling_spec("web")]).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?} {events:#?}");
    };
    assert!(
        error.to_string().contains("smoke test of app 'web' failed"),
        "{error}"
    );
    assert!(
        !cf.mutating_calls()
            .iter()
            .any(|c| c.starts_with("continue_deployment"))
    );
    assert_eq!(deployment_states(&cf), vec![DeploymentState::Canceled]);
    assert_eq!(
        env_of(&cf, "A").get("GREETING").map(String::as_str),
        Some("v1")
    );
}

#[tokio::test(start_paused = true)]
async fn rolling_first_deploy_is_a_plain_push() {
    let cf = FakeCf::new();
    let (outcome, events) =
        deploy(&cf, &rolling_req(Strategy::Rolling), &[rolling_spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let web = cf.app_named("web").unwrap();
    assert_eq!(web.app.state, AppState::Started);
    assert!(cf.lock().deployments.is_empty());
    assert!(
        cf.mutating_calls()
            .iter()
            .any(|c| c.starts_with("start_app"))
    );
}

#[tokio::test(start_paused = true)]
async fn rolling_dry_run_shows_the_plan_and_changes_nothing() {
    let cf = rolling_world();
    let mut r = rolling_req(Strategy::Canary);
    r.dry_run = true;
    r.smoke_test_path = Some("/health".into());
    let (outcome, events) = deploy(&cf, &r, &[rolling_spec("web")]).await;
    assert_eq!(outcome, Outcome::DryRun);
    assert!(cf.mutating_calls().is_empty());
    let Some(Event::Plan { apps, steps, .. }) =
        events.iter().find(|e| matches!(e, Event::Plan { .. }))
    else {
        panic!("no plan: {events:#?}");
    };
    assert_eq!(
        apps,
        &vec!["web: canary deployment (same app GUID), routes web.example.com".to_string()]
    );
    assert!(
        steps[0].contains("Recording the environment variables and service bindings of web"),
        "{steps:#?}"
    );
    assert!(
        steps.last().unwrap().contains(
            "Canary deployment of web: smoke-test the canary at web.example.com at every pause"
        ),
        "{steps:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn rolling_multi_app_failure_of_the_second_app_leaves_the_first_deployed() {
    let cf = rolling_world();
    cf.add_route("api", &["B"]);
    cf.lock()
        .new_instances
        .insert("B".into(), NewInstances::Crash);
    let apps = [rolling_spec("web"), rolling_spec("backend")];
    let (outcome, events) = deploy(&cf, &rolling_req(Strategy::Rolling), &apps).await;
    let Outcome::PartlyDeployed { error, deployed } = &outcome else {
        panic!("{outcome:?} {events:#?}");
    };
    assert_eq!(deployed, &vec!["web".to_string()]);
    assert!(error.to_string().starts_with("app backend: "), "{error}");
    assert!(
        error
            .to_string()
            .contains("stay deployed with their new version: web"),
        "{error}"
    );
    assert_eq!(outcome.exit_code(), 1);
    let states = deployment_states(&cf);
    assert!(
        states.contains(&DeploymentState::Deployed) && states.contains(&DeploymentState::Canceled)
    );
    assert!(
        !env_of(&cf, "B").contains_key("ADDED"),
        "backend's env restored"
    );
    assert_eq!(
        env_of(&cf, "A").get("GREETING").map(String::as_str),
        Some("v2")
    );
}

#[tokio::test(start_paused = true)]
async fn canary_smoke_test_without_a_route_is_refused_before_any_change() {
    let cf = rolling_world();
    let mut r = rolling_req(Strategy::Canary);
    r.smoke_test_path = Some("/health".into());
    let spec = AppSpec {
        routes: RouteSpec::NoRoute,
        ..rolling_spec("web")
    };
    let (outcome, events) = deploy(&cf, &r, &[spec]).await;
    let Outcome::NothingChanged { error } = &outcome else {
        panic!("{outcome:?} {events:#?}");
    };
    assert!(
        error.to_string().contains("a smoke test needs a route"),
        "{error}"
    );
    assert!(cf.mutating_calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn rolling_with_a_smoke_test_warns_that_it_is_skipped() {
    let cf = rolling_world();
    let mut r = rolling_req(Strategy::Rolling);
    r.smoke_test_path = Some("/health".into());
    let (outcome, events) = deploy(&cf, &r, &[rolling_spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Warning { message, .. }
        if message.contains("the smoke test is skipped (use --strategy canary)")))
    );
}

#[tokio::test]
async fn canary_analysis_without_log_cache_fails_before_any_change() {
    // The fake has no log-cache: blue-green with --canary-steps and a canary deployment with
    // --analysis both stop at the first step, before any mutating call.
    for strategy in [Strategy::BlueGreen, Strategy::Canary] {
        let cf = world();
        let r = DeployRequest {
            strategy,
            analysis: Some(cf_zero_downtime::deploy::analysis::AnalysisConfig {
                steps: vec![25, 100],
                ..Default::default()
            }),
            ..req()
        };
        let (outcome, events) = deploy(&cf, &r, &[spec("web")]).await;
        let Outcome::NothingChanged { error } = &outcome else {
            panic!("{strategy:?}: {outcome:?} {events:#?}")
        };
        assert!(
            error
                .to_string()
                .contains("needs the router's request records of web"),
            "{error}"
        );
        assert!(cf.mutating_calls().is_empty(), "{:?}", cf.mutating_calls());
        assert!(
            cf.calls().iter().any(|c| c == "app_log A"),
            "{:?}",
            cf.calls()
        );
    }
}

#[tokio::test]
async fn a_canary_plan_shows_its_steps_before_the_switch() {
    let cf = world();
    let r = DeployRequest {
        dry_run: true,
        analysis: Some(cf_zero_downtime::deploy::analysis::AnalysisConfig {
            steps: vec![10, 50, 100],
            ..Default::default()
        }),
        ..req()
    };
    let (outcome, events) = deploy(&cf, &r, &[spec("web")]).await;
    assert_eq!(outcome, Outcome::DryRun);
    let Some(Event::Plan { steps, .. }) = events.iter().find(|e| matches!(e, Event::Plan { .. }))
    else {
        panic!("{events:#?}")
    };
    let text = steps.join("\n");
    let switch = text.find("no rollback after this point").unwrap();
    for s in [
        "Canary step 1 of 3: judging the new web at about 10% of the requests against web",
        "Canary step 2 of 3",
        "Scaling the new web to take about 50% of the requests",
        "Scaling the new web to its full instance count",
    ] {
        let at = text.find(s).unwrap_or_else(|| panic!("{s} not in {text}"));
        assert!(at < switch, "{s} after the switch: {text}");
    }
    assert!(cf.mutating_calls().is_empty());
}

// ---- release tasks (--task-before-switch) ---------------------------------------------------

fn after_req(commands: &[&str]) -> DeployRequest {
    let mut r = task_req(&[]);
    r.tasks.after_switch = commands.iter().map(|c| c.to_string()).collect();
    r
}

/// The names of the tasks created, in order (their GUIDs are `task-<n>`).
fn task_names(cf: &FakeCf) -> Vec<String> {
    let mut tasks: Vec<(u64, String)> = cf
        .lock()
        .tasks
        .iter()
        .map(|(guid, t)| {
            let n = guid.trim_start_matches("task-").parse().unwrap_or(u64::MAX);
            (n, t.1.clone())
        })
        .collect();
    tasks.sort();
    tasks.into_iter().map(|t| t.1).collect()
}

#[tokio::test(start_paused = true)]
async fn after_switch_tasks_run_in_order_on_the_new_version_once_the_retire_is_done() {
    let cf = world();
    let (outcome, events) =
        deploy(&cf, &after_req(&["warm-cache", "notify"]), &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let web = assert_swapped(&cf);
    let calls = cf.calls();
    assert!(index_of(&calls, "create_task") > index_of(&calls, "remove_destination"));
    assert!(index_of(&calls, "create_task") > index_of(&calls, "delete_app A"));
    assert_eq!(
        task_names(&cf),
        ["zdt-after-switch-1", "zdt-after-switch-2"]
    );
    assert!(cf.lock().tasks.values().all(|t| t.0 == web));
    assert!(events.iter().any(|e| matches!(e, Event::StepStarted { kind, description, .. }
        if kind == "run_task" && description == "Running task zdt-after-switch-1 on web (--task-after-switch)")));
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_shows_the_tasks_by_name_and_position_never_their_commands() {
    let cf = world();
    let mut r = after_req(&["warm-cache --token s3cr3t"]);
    r.tasks.before_switch = vec!["bin/rails db:migrate PASSWORD=hunter2".into()];
    r.dry_run = true;
    let (outcome, events) = deploy(&cf, &r, &[spec("web")]).await;
    assert_eq!(outcome, Outcome::DryRun);
    assert!(cf.mutating_calls().is_empty());
    let Some(Event::Plan { steps, .. }) = events.iter().find(|e| matches!(e, Event::Plan { .. }))
    else {
        panic!("no plan event")
    };
    let at = |s: &str| {
        steps
            .iter()
            .position(|l| l.contains(s))
            .unwrap_or_else(|| panic!("{s} not in {steps:#?}"))
    };
    let before = at("Running task zdt-migrate-1 on the new web (--task-before-switch)");
    let commit = at("-- the old version stops serving here");
    let retired = at("Deleting app web-venerable");
    let after = at("Running task zdt-after-switch-1 on web (--task-after-switch)");
    assert!(
        before < commit && commit < retired && retired < after,
        "{steps:#?}"
    );
    assert_eq!(after, steps.len() - 1, "{steps:#?}");
    let text = steps.join("\n");
    assert!(
        !text.contains("s3cr3t") && !text.contains("hunter2"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_after_switch_task_is_reported_not_rolled_back_and_exits_1() {
    let cf = world();
    cf.lock().task_outcomes.insert(
        "web".into(),
        TaskState::Failed("APP/TASK/zdt-after-switch-1: Exited with status 1".into()),
    );
    let (outcome, _) = deploy(&cf, &after_req(&["warm-cache", "notify"]), &[spec("web")]).await;
    let Outcome::AfterSwitchTaskFailed { error, not_run } = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        error.message,
        "task 'zdt-after-switch-1' of app 'web' failed: APP/TASK/zdt-after-switch-1: Exited with status 1"
    );
    assert!(
        error
            .to_string()
            .contains("the new version serves and is not rolled back"),
        "{error}"
    );
    assert_eq!(
        not_run,
        &[
            "cf run-task web --name zdt-after-switch-2 --command '<its --task-after-switch command>'"
        ]
    );
    assert_eq!(outcome.exit_code(), 1);
    assert_eq!(
        outcome.last_line(),
        "deployed, after-switch task failed (the new version serves)"
    );
    assert_swapped(&cf);
    assert_eq!(task_names(&cf), ["zdt-after-switch-1"]);
    assert!(!cf.calls().iter().any(|c| c.starts_with("cancel_task")));
    let json = serde_json::to_value(&outcome).unwrap();
    assert_eq!(json["result"], "after_switch_task_failed");
}

#[tokio::test(start_paused = true)]
async fn an_after_switch_task_create_is_never_tried_again_but_its_reads_are() {
    // The create took effect, but its answer was lost: trying again could run it twice.
    let cf = world();
    cf.fail("create_task", 1, When::After);
    let (outcome, events) = deploy(&cf, &after_req(&["migrate-contract"]), &[spec("web")]).await;
    let Outcome::AfterSwitchTaskFailed { error, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(error.message.contains("create_task"), "{error}");
    assert_eq!(
        cf.calls()
            .iter()
            .filter(|c| c.starts_with("create_task"))
            .count(),
        1,
        "{events:#?}"
    );
    assert_eq!(outcome.exit_code(), 1);
    assert_swapped(&cf);

    // A failed read of the task's state is asked again: the task runs once, the deploy ends well.
    let cf = world();
    cf.fail("get_task", 1, When::Before);
    let (outcome, events) = deploy(&cf, &after_req(&["migrate-contract"]), &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert_eq!(task_names(&cf), ["zdt-after-switch-1"]);
    assert!(events.iter().any(
        |e| matches!(e, Event::Warning { message, .. } if message.contains("trying again (1 of 2)"))
    ));
}

/// A reporter that interrupts the deploy once a task has started (its first wait).
struct CancelWhileTaskRuns {
    token: CancellationToken,
    events: Vec<Event>,
}

impl Reporter for CancelWhileTaskRuns {
    fn report(&mut self, event: Event) {
        if matches!(&event, Event::Waiting { what, .. } if what == "task") {
            self.token.cancel();
        }
        self.events.push(event);
    }
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_during_an_after_switch_task_cancels_it_and_stays_deployed() {
    let cf = world();
    cf.lock()
        .task_outcomes
        .insert("web".into(), TaskState::Running);
    let token = CancellationToken::new();
    let mut rep = CancelWhileTaskRuns {
        token: token.clone(),
        events: Vec::new(),
    };
    let outcome = run(
        &cf,
        &after_req(&["sleep 1000", "notify"]),
        &[spec("web")],
        &mut rep,
        &token,
    )
    .await;
    let Outcome::AfterSwitchTaskFailed { error, not_run } = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        error.message,
        "interrupted at task zdt-after-switch-1 of app 'web' (cancelled, or not started); the deploy stays deployed (the switch is done)"
    );
    assert_eq!(not_run.len(), 1);
    assert!(cf.calls().iter().any(|c| c.starts_with("cancel_task")));
    assert!(rep.events.iter().any(
        |e| matches!(e, Event::Warning { message, .. } if message == "task zdt-after-switch-1 was cancelled")
    ));
    assert_swapped(&cf);
}

/// Records which app's task the interrupt names whenever a task is waited for.
struct TaskApps {
    interrupt: Interrupt,
    seen: Vec<(String, Option<String>)>,
}

impl Reporter for TaskApps {
    fn report(&mut self, event: Event) {
        if let Event::Waiting { what, detail, .. } = &event
            && what == "task"
        {
            self.seen
                .push((detail.clone(), self.interrupt.running_task()));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_interrupt_names_the_app_whose_task_runs_for_the_second_interrupt_notice() {
    let cf = world();
    cf.lock().task_running_reads = 1;
    let mut r = after_req(&["warm"]);
    r.tasks.before_switch = vec!["migrate".into()];
    let interrupt = Interrupt::new();
    let mut rep = TaskApps {
        interrupt: interrupt.clone(),
        seen: Vec::new(),
    };
    let outcome = run(&cf, &r, &[spec("web")], &mut rep, &interrupt).await;
    assert_eq!(outcome, Outcome::Deployed);
    let apps: Vec<(&str, Option<&str>)> = rep
        .seen
        .iter()
        .map(|(d, a)| (d.as_str(), a.as_deref()))
        .collect();
    assert_eq!(
        apps.first(),
        Some(&("task zdt-migrate-1 running", Some("web-candidate")))
    );
    assert_eq!(
        apps.last(),
        Some(&("task zdt-after-switch-1 running", Some("web")))
    );
    assert_eq!(
        interrupt.running_task(),
        None,
        "no task runs after the deploy"
    );
    assert_eq!(
        cf_zero_downtime::ui::interrupted_text(true, true, Some("web")),
        "Interrupted again: no longer waiting; the task may still be running: check with 'cf tasks web' (and 'cf terminate-task web <id>' to stop it); what is left to do is listed below."
    );
}

#[tokio::test(start_paused = true)]
async fn after_switch_tasks_of_every_app_run_after_every_switch() {
    let cf = two_apps();
    let (outcome, events) = deploy(&cf, &after_req(&["warm"]), &[spec("web"), spec("api")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    let calls = cf.calls();
    let last_remove = calls
        .iter()
        .rposition(|c| c.starts_with("remove_destination"))
        .unwrap();
    let creates: Vec<usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.starts_with("create_task"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(creates.len(), 2);
    assert!(creates[0] > last_remove, "{calls:#?}");
}

fn task_req(commands: &[&str]) -> DeployRequest {
    DeployRequest {
        tasks: TaskRequest {
            before_switch: commands.iter().map(|c| c.to_string()).collect(),
            after_switch: Vec::new(),
            memory_mb: Some(256),
            disk_mb: None,
            timeout: Duration::from_secs(120),
        },
        ..req()
    }
}

/// With `--parallel`, the apps' release tasks (the same command, e.g. a migration) still run
/// one at a time, in manifest order, while the rest of each candidate's steps overlap.
#[tokio::test(start_paused = true)]
async fn release_tasks_of_several_apps_run_one_at_a_time_in_manifest_order() {
    let cf = two_apps();
    cf.lock().task_running_reads = 3;
    let (outcome, events) = deploy(&cf, &task_req(&["migrate"]), &[spec("web"), spec("api")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    // (kind, app, started) of the run_task and stage steps, in order.
    let mut open: Vec<(String, String)> = Vec::new();
    let mut overlaps: Vec<String> = Vec::new();
    let mut task_order: Vec<String> = Vec::new();
    for e in &events {
        match e {
            Event::StepStarted { kind, app, .. } if kind == "run_task" || kind == "stage" => {
                if open.iter().any(|(k, _)| k == kind) {
                    overlaps.push(kind.clone());
                }
                if kind == "run_task" {
                    task_order.push(app.clone());
                }
                open.push((kind.clone(), app.clone()));
            }
            Event::StepFinished { kind, app, .. } => {
                open.retain(|(k, a)| !(k == kind && a == app));
            }
            _ => {}
        }
    }
    assert_eq!(task_order, ["web", "api"]);
    assert!(overlaps.iter().any(|k| k == "stage"), "{events:#?}");
    assert!(!overlaps.iter().any(|k| k == "run_task"), "{events:#?}");
}

#[tokio::test(start_paused = true)]
async fn release_tasks_run_on_the_healthy_candidate_before_the_switch() {
    let cf = world();
    let r = task_req(&["bin/rails db:migrate", "bin/rails db:seed"]);
    let (outcome, events) = deploy(&cf, &r, &[spec("web")]).await;
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert_swapped(&cf);
    let calls = cf.calls();
    let tasks: Vec<&String> = calls
        .iter()
        .filter(|c| c.starts_with("create_task"))
        .collect();
    assert_eq!(tasks.len(), 2, "{calls:#?}");
    assert!(index_of(&calls, "create_task") > index_of(&calls, "process_stats"));
    assert!(index_of(&calls, "create_task") < index_of(&calls, "remove_destination"));
    let names: Vec<String> = cf.lock().tasks.values().map(|t| t.1.clone()).collect();
    assert_eq!(names, ["zdt-migrate-1", "zdt-migrate-2"]);
    assert!(events.iter().any(|e| matches!(e, Event::StepStarted { kind, description, .. }
        if kind == "run_task" && description == "Running task zdt-migrate-1 on the new web (--task-before-switch)")));
}

#[tokio::test(start_paused = true)]
async fn a_failed_release_task_rolls_back_before_the_switch_and_says_it_is_not_undone() {
    let cf = world();
    let before = cf.snapshot();
    cf.lock().task_outcomes.insert(
        "web".into(),
        TaskState::Failed("APP/TASK/zdt-migrate-1: Exited with status 1".into()),
    );
    let (outcome, _) = deploy(&cf, &task_req(&["bin/rails db:migrate"]), &[spec("web")]).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        error.to_string().contains(
            "task 'zdt-migrate-1' of app 'web' failed: APP/TASK/zdt-migrate-1: Exited with status 1"
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains("the rollback does not undo it"),
        "{error}"
    );
    assert!(
        !cf.calls()
            .iter()
            .any(|c| c.starts_with("remove_destination"))
    );
    assert!(!cf.calls().iter().any(|c| c.starts_with("cancel_task")));
    assert_eq!(cf.snapshot(), before);
}

#[tokio::test(start_paused = true)]
async fn a_release_task_that_does_not_end_is_cancelled_at_the_timeout_and_rolled_back() {
    let cf = world();
    let before = cf.snapshot();
    cf.lock()
        .task_outcomes
        .insert("web".into(), TaskState::Running);
    let (outcome, _) = deploy(&cf, &task_req(&["sleep 1000"]), &[spec("web")]).await;
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        error.to_string().contains(
            "task 'zdt-migrate-1' of app 'web' did not finish within 2m (--task-timeout)"
        ),
        "{error}"
    );
    assert!(cf.calls().iter().any(|c| c.starts_with("cancel_task")));
    assert_eq!(cf.snapshot(), before);
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_during_a_release_task_cancels_it_and_rolls_back() {
    let cf = world();
    let before = cf.snapshot();
    cf.lock()
        .task_outcomes
        .insert("web".into(), TaskState::Running);
    let token = CancellationToken::new();
    let mut rep = CancelAt {
        kind: "run_task".into(),
        token: token.clone(),
        events: Vec::new(),
    };
    let outcome = run(
        &cf,
        &task_req(&["sleep 1000"]),
        &[spec("web")],
        &mut rep,
        &token,
    )
    .await;
    assert!(
        matches!(&outcome, Outcome::RolledBack { error } if error.to_string().starts_with("interrupted")),
        "{outcome:?}"
    );
    assert!(cf.calls().iter().any(|c| c.starts_with("cancel_task")));
    assert!(rep.events.iter().any(
        |e| matches!(e, Event::Warning { message, .. } if message == "task zdt-migrate-1 was cancelled")
    ));
    assert_eq!(cf.snapshot(), before);
}

#[tokio::test(start_paused = true)]
async fn a_failed_release_task_of_the_second_app_leaves_both_on_the_old_version() {
    let cf = two_apps();
    let before = cf.snapshot();
    cf.lock().task_outcomes.insert(
        "api".into(),
        TaskState::Failed("APP/TASK/zdt-migrate-1: Exited with status 2".into()),
    );
    let (outcome, _) = deploy(&cf, &task_req(&["migrate"]), &[spec("web"), spec("api")]).await;
    assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome:?}");
    assert!(!cf.calls().iter().any(|c| c.starts_with("add_destination")));
    assert_eq!(
        cf.calls()
            .iter()
            .filter(|c| c.starts_with("create_task"))
            .count(),
        2,
        "the first app's task ran, then the second's failed"
    );
    assert_eq!(cf.snapshot(), before);
}
