//! End-to-end: release tasks (`--task-before-switch`) on the simulator under load. The task
//! runs for real (the candidate's droplet and env) after the health wait and before the
//! switch; a failed or interrupted task rolls back with the live app untouched, and in a
//! multi-app deploy a failed task of the second app leaves both on the old version. A failed
//! `--task-after-switch` task leaves the new version deployed and exits 1. Each case ends with 0
//! failed requests.

use std::path::PathBuf;
use std::time::Duration;

use cf_zero_downtime::command::push::PushArgs;
use cf_zero_downtime::deploy::{Event, Outcome};
use tokio_util::sync::CancellationToken;

use crate::support::sim_world::{AppVersion, World, assert_no_failures, fast, push_args, world};

/// Writes version `version` of each app in `apps` (with a `migrate.sh` that says which version
/// it migrates to) and returns the manifest.
fn version(w: &World, version: &str, apps: &[&str]) -> PathBuf {
    let apps: Vec<AppVersion> = apps
        .iter()
        .map(|app| {
            AppVersion::new(app, 2).file(
                "migrate.sh",
                &format!("echo \"migrating {app} to {version}\"\n"),
            )
        })
        .collect();
    w.write_version(version, &apps)
}

fn with_task(manifest: &std::path::Path, command: &str) -> PushArgs {
    PushArgs {
        task_before_switch: vec![command.to_string()],
        task_memory: Some(64),
        task_timeout: Duration::from_secs(60),
        ..push_args(manifest)
    }
}

/// The task's log lines the deploy showed.
fn task_lines(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Log { line, .. } if line.source.starts_with("APP/TASK/") => {
                Some(format!("[{}] {}", line.source, line.text))
            }
            _ => None,
        })
        .collect()
}

/// The position of the first call `method` whose path contains `part` in the call log.
fn call_at(w: &World, method: &str, part: &str) -> Option<usize> {
    w.sim
        .call_log()
        .iter()
        .position(|c| c.method == method && c.path.contains(part))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_task_runs_on_the_candidate_then_the_switch_loses_no_request() {
    let w = world(fast()).await;
    let m1 = version(&w, "v1", &["web"]);
    w.push_deployed(push_args(&m1)).await;
    let load = w.load("web").await;
    let m2 = version(&w, "v2", &["web"]);
    w.sim.clear_call_log();
    let (outcome, events) = w.push(with_task(&m2, "sh migrate.sh")).await;
    w.settle().await;
    let report = load.stop().await;
    eprintln!("passing task: {outcome:?}; {} requests", report.total);
    assert_no_failures(&report);
    assert_eq!(outcome, Outcome::Deployed, "{events:#?}");
    assert_eq!(
        task_lines(&events),
        ["[APP/TASK/zdt-migrate-1/0] migrating web to v2"]
    );
    let task = call_at(&w, "POST", "/tasks").expect("a task was created");
    let switch = call_at(&w, "DELETE", "/destinations/").expect("the old app was unmapped");
    assert!(task < switch, "the task runs before the switch");
    assert_eq!(w.app_names().await, ["web"]);
    assert_eq!(w.serving("web").await, "v2");
    w.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_task_rolls_back_and_the_live_app_is_untouched() {
    let w = world(fast()).await;
    let m1 = version(&w, "v1", &["web"]);
    w.push_deployed(push_args(&m1)).await;
    let load = w.load("web").await;
    let m2 = version(&w, "v2", &["web"]);
    w.sim.clear_call_log();
    let (outcome, events) = w
        .push(with_task(
            &m2,
            "sh migrate.sh; echo 'relation users already exists' >&2; exit 3",
        ))
        .await;
    w.settle().await;
    let report = load.stop().await;
    eprintln!("failing task: {outcome:?}; {} requests", report.total);
    assert_no_failures(&report);
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?} {events:#?}")
    };
    assert!(
        error.to_string().contains(
            "task 'zdt-migrate-1' of app 'web' failed: APP/TASK/zdt-migrate-1: Exited with status 3"
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains("the rollback does not undo it"),
        "{error}"
    );
    let last: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::LastLogs { lines, .. } => Some(lines.iter().map(|l| l.text.clone())),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(
        last.iter().any(|l| l == "relation users already exists"),
        "{last:?}"
    );
    assert_eq!(call_at(&w, "DELETE", "/destinations/"), None, "no switch");
    assert_eq!(w.app_names().await, ["web"]);
    assert_eq!(w.serving("web").await, "v1");
    w.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_mid_task_cancels_it_and_rolls_back() {
    let w = world(fast()).await;
    let m1 = version(&w, "v1", &["web"]);
    w.push_deployed(push_args(&m1)).await;
    let load = w.load("web").await;
    let m2 = version(&w, "v2", &["web"]);
    w.sim.faults().hang_task("web-candidate");
    w.sim.clear_call_log();
    let cancel = CancellationToken::new();
    let mut events: Vec<Event> = Vec::new();
    let push = Box::pin(w.push_with(with_task(&m2, "sh migrate.sh"), &mut events, &cancel));
    let interrupt = async {
        w.wait_for_call("POST", "/tasks").await;
        // Let the deploy see the task running, then Ctrl-C.
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    };
    let (outcome, ()) = tokio::join!(push, interrupt);
    w.settle().await;
    let report = load.stop().await;
    eprintln!("interrupted task: {outcome:?}; {} requests", report.total);
    assert_no_failures(&report);
    assert!(
        matches!(&outcome, Outcome::RolledBack { error } if error.to_string().starts_with("interrupted")),
        "{outcome:?} {events:#?}"
    );
    assert!(
        call_at(&w, "POST", "/actions/cancel").is_some(),
        "the task was cancelled"
    );
    assert!(events.iter().any(
        |e| matches!(e, Event::Warning { message, .. } if message == "task zdt-migrate-1 was cancelled")
    ));
    assert_eq!(w.app_names().await, ["web"]);
    assert_eq!(w.serving("web").await, "v1");
    w.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_task_of_the_second_app_leaves_both_apps_on_the_old_version() {
    let w = world(fast()).await;
    let m1 = version(&w, "v1", &["web", "api"]);
    w.push_deployed(push_args(&m1)).await;
    let load = w.load("web").await;
    let m2 = version(&w, "v2", &["web", "api"]);
    w.sim.faults().fail_task("api-candidate", 1);
    w.sim.clear_call_log();
    // One app after the other: the first app's task has run when the second's fails (with
    // --parallel the second's failure may cut the first's short; deploy.rs covers that).
    let mut args = with_task(&m2, "sh migrate.sh");
    args.parallel = Some(1);
    let (outcome, events) = w.push(args).await;
    w.settle().await;
    let report = load.stop().await;
    eprintln!(
        "multi-app failing task: {outcome:?}; {} requests",
        report.total
    );
    assert_no_failures(&report);
    let Outcome::RolledBack { error } = &outcome else {
        panic!("{outcome:?} {events:#?}")
    };
    assert!(
        error
            .to_string()
            .contains("task 'zdt-migrate-1' of app 'api' failed"),
        "{error}"
    );
    assert!(
        task_lines(&events)
            .iter()
            .any(|l| l.ends_with("migrating web to v2")),
        "the first app's task ran: {events:#?}"
    );
    assert_eq!(call_at(&w, "DELETE", "/destinations/"), None, "no switch");
    assert_eq!(w.app_names().await, ["api", "web"]);
    assert_eq!(w.serving("web").await, "v1");
    assert_eq!(w.serving("api").await, "v1");
    w.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_text_output_streams_the_task_lines_and_explains_a_failure() {
    use cf_zero_downtime::ui::TextReporter;
    let w = world(fast()).await;
    let m1 = version(&w, "v1", &["web"]);
    w.push_deployed(push_args(&m1)).await;
    let m2 = version(&w, "v2", &["web"]);
    let mut rep = TextReporter::plain(Vec::new());
    let failing = with_task(
        &m2,
        "sh migrate.sh; echo 'relation users already exists' >&2; exit 3",
    );
    let outcome = w
        .push_with(failing, &mut rep, &CancellationToken::new())
        .await;
    let out = String::from_utf8(rep.into_inner()).unwrap();
    eprintln!("{out}");
    assert!(matches!(outcome, Outcome::RolledBack { .. }), "{out}");
    assert!(out.contains("migrating web to v2"), "{out}");
    assert!(out.contains("relation users already exists"), "{out}");
    assert!(out.contains("the rollback does not undo it"), "{out}");
    assert_eq!(
        out.lines().last(),
        Some("rolled back, the old version is serving")
    );
    let mut rep = TextReporter::plain(Vec::new());
    let outcome = w
        .push_with(
            with_task(&m2, "sh migrate.sh"),
            &mut rep,
            &CancellationToken::new(),
        )
        .await;
    let out = String::from_utf8(rep.into_inner()).unwrap();
    eprintln!("{out}");
    assert_eq!(outcome, Outcome::Deployed, "{out}");
    assert!(out.contains("migrating web to v2"), "{out}");
    w.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_after_switch_task_leaves_the_new_version_deployed_and_exits_1() {
    use cf_zero_downtime::ui::TextReporter;
    let w = world(fast()).await;
    let m1 = version(&w, "v1", &["web"]);
    w.push_deployed(push_args(&m1)).await;
    let load = w.load("web").await;
    let m2 = version(&w, "v2", &["web"]);
    w.sim.clear_call_log();
    let args = PushArgs {
        task_after_switch: vec![
            "sh migrate.sh; echo 'cache warm-up failed: connection refused' >&2; exit 4".into(),
            "echo never runs".into(),
        ],
        ..with_task(&m2, "sh migrate.sh")
    };
    let mut rep = TextReporter::plain(Vec::new());
    let outcome = w.push_with(args, &mut rep, &CancellationToken::new()).await;
    w.settle().await;
    let report = load.stop().await;
    let out = String::from_utf8(rep.into_inner()).unwrap();
    eprintln!("{out}");
    eprintln!(
        "failing after-switch task: {outcome:?}; {} requests",
        report.total
    );
    assert_no_failures(&report);
    let Outcome::AfterSwitchTaskFailed { error, not_run } = &outcome else {
        panic!("{outcome:?} {out}")
    };
    assert_eq!(outcome.exit_code(), 1);
    assert_eq!(
        error.message,
        "task 'zdt-after-switch-1' of app 'web' failed: APP/TASK/zdt-after-switch-1: Exited with status 4"
    );
    assert_eq!(not_run.len(), 1, "{not_run:?}");
    assert!(
        out.contains("[APP/TASK/zdt-migrate-1/0] migrating web to v2"),
        "{out}"
    );
    assert!(
        out.contains(
            "[APP/TASK/zdt-after-switch-1/0] ERR cache warm-up failed: connection refused"
        ),
        "{out}"
    );
    assert!(out.contains("Last log lines of web:\n"), "{out}");
    assert_eq!(
        out.lines().last(),
        Some("deployed, after-switch task failed (the new version serves)")
    );
    let switch = call_at(&w, "DELETE", "/destinations/").expect("the old app was unmapped");
    let tasks: Vec<usize> = w
        .sim
        .call_log()
        .iter()
        .enumerate()
        .filter(|(_, c)| c.method == "POST" && c.path.ends_with("/tasks"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        tasks.len(),
        2,
        "the before-switch task and the first after-switch one"
    );
    assert!(tasks[0] < switch && switch < tasks[1]);
    assert_eq!(w.app_names().await, ["web"]);
    assert_eq!(w.serving("web").await, "v2");
    w.sim.shutdown().await;
}
